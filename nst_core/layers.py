"""VGG19's layer names as in Gatys et al. (conv{block}_{k}, relu{block}_{k}, pool{block}); no torch here,
so settings, the CLI's --help and the app's server can use them without loading the network."""

BLOCKS = (2, 2, 4, 4, 4)  # conv layers per block of VGG19 (configuration "E")
CHANNELS = (64, 128, 256, 512, 512)  # output channels of each block


def _layer_names() -> tuple[str, ...]:
    names = []
    for b, n in enumerate(BLOCKS, start=1):
        for k in range(1, n + 1):
            names += [f"conv{b}_{k}", f"relu{b}_{k}"]
        names.append(f"pool{b}")
    return tuple(names)


LAYERS: tuple[str, ...] = _layer_names()  # LAYERS[i] names torchvision's vgg19().features[i]
LAYER_INDEX = {name: i for i, name in enumerate(LAYERS)}
CONV_LAYERS = tuple(n for n in LAYERS if n.startswith("conv"))
RELU_LAYERS = tuple(n for n in LAYERS if n.startswith("relu"))
