"""npuzoo: shared tooling of the inference zoo.

The ais_bench-compatible ONNX Runtime runner (`python3 -m npuzoo.bench`), model.yaml
loading, dataset checks, weights download, chip detection, report writing and rendering.
Model folders under models/ never import this package: they stand alone.
"""

__version__ = "0.1.0"
