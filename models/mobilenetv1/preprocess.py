"""Preprocess ImageNet images for MobileNetV1: `python3 preprocess.py SRC DST [--limit N] [--workers K] [--uint8]`.

Mirrors Ascend ModelZoo-PyTorch ACL_PyTorch/contrib/cv/classfication/MobileNet-v1/
imagenet_torch_preprocess.py (Apache-2.0, run there as `resnet SRC DST`): shorter side to 256
(BILINEAR), centre crop 224 at rounded offsets, /255, ImageNet mean and std, float32 CHW as
DST/<stem>.bin: torchvision's Resize(256), CenterCrop(224), ToTensor(), Normalize(mean, std).

Every parameter comes from model.yaml beside this file. The work is _zoo.py's (beside this
file, section "preprocess"): images in SRC and one level of class subfolders, K worker
processes, an undecodable image or two images with one stem stop the run with one line, and
`--uint8` writes the cropped pixels for an om with AIPP.
Temporary files: only DST/.preprocess-XXXXXXXX.tmp/, removed at the end of every run that is
not killed; a driver may remove a killed run's `.*.tmp` entries of DST when no run is active.
"""

import importlib.util
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_helper(name="_zoo" + re.sub(r"\W", "_", HERE)):
    """_zoo.py beside this file (a copy of the project's models/_zoo.py), imported by path under
    a name of this folder's own: the folder needs nothing from outside itself."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, "_zoo.py"))
        sys.modules[name] = importlib.util.module_from_spec(spec)  # first: workers pickle by name
        try:
            spec.loader.exec_module(sys.modules[name])
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


zoo = _load_helper()


if __name__ == "__main__":
    sys.exit(zoo.preprocess_main(HERE))
