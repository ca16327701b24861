"""Top-1..5 accuracy of TXT inference results: `python3 postprocess.py RESULT_DIR LABEL_FILE OUT_DIR JSON_NAME`.

Mirrors the Ascend ModelZoo-PyTorch `imagenet_acc_eval.py` of the DPN131 guide
(ACL_PyTorch/contrib/cv/classfication/DPN131; Apache-2.0), and writes the same accuracy JSON,
byte for byte. The work is _zoo.py's (beside this file, section "postprocess"), which
also lists the differences from the ModelZoo script (sorted reading, one-line errors, NaN
warning, BOM-tolerant labels).
Temporary files: only `OUT_DIR/.<JSON_NAME>.<pid>.tmp`, which matches `.*.tmp`.
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
    sys.exit(zoo.postprocess_main())
