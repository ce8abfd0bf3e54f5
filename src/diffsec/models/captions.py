"""The CIFAR-10 caption vocabulary the tiny text-to-image world and the tiny CLIP are trained on.

Constants only, kept apart from the models that use them so that a stage reading a caption does
not import (and so, through its derived code inputs, depend on) a whole model module.
"""

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
# A few phrasings so the text encoder learns to read the class word, not one fixed string;
# the first is the one sampling and textual inversion use.
TEMPLATES = ("a photo of a {}", "a picture of a {}", "a blurry photo of a {}", "an image of a {}")
PROMPT = TEMPLATES[0]
