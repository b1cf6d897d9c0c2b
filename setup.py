#!/usr/bin/env python
"""alignment_det: Detectron2 extension for classification/localization alignment.

torch, numpy and scipy are the only hard requirements (the pure tensor layer). torchvision and
Detectron2 are needed for the Detectron2 layer but are not listed: torchvision must be the release
paired with the installed torch, and Detectron2 is on no package index and is built from its git
commit against that torch. README's two commands install them first. Extras: ``d2`` is what the
Detectron2 layer imports beyond Detectron2 and Detectron2's own requirements (fvcore, iopath,
omegaconf, pycocotools, matplotlib, tqdm come with it); ``test`` runs the suite.
Nothing here imports torch or pkg_resources.
"""
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def version() -> str:
    with open(os.path.join(HERE, "alignment_det", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip("\"'")
    raise RuntimeError("no __version__ in alignment_det/__init__.py")


class BuildPyWithConfigs(build_py):
    """Ship configs/ inside the package (alignment_det/model_zoo/configs), so the model
    zoo and ``--config-file mal_R101.py`` work from an installed wheel."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "alignment_det", "model_zoo", "configs")
        shutil.copytree(
            os.path.join(HERE, "configs"), target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
        )


setup(
    name="alignment_det",
    version=version(),
    description="MAL, DATE, RetinaNet-Conf, HCRAL and ALWA for Detectron2",
    long_description=open(os.path.join(HERE, "README.md")).read() if os.path.exists(os.path.join(HERE, "README.md")) else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["alignment_det", "alignment_det.*"]),
    cmdclass={"build_py": BuildPyWithConfigs},
    install_requires=["torch>=2.0", "numpy", "scipy"],
    extras_require={
        # pytest-xdist: README's command spreads the suite over every core (-n auto); filelock: the
        # workers share one training of each instant run (tests/conftest.py).
        "test": ["pytest", "pytest-xdist", "filelock"],
        # What the Detectron2 layer imports beyond Detectron2 and its requirements: OpenCV (the
        # synthetic dataset, tools/demo.py). A missing one is an ImportError naming this extra
        # (alignment_det.utils.optional.import_optional).
        "d2": ["opencv-python-headless"],
        # tools/analyze_alignment.py and AlignmentEvaluator(tide=True): TIDE errors through hotcoco.
        "analysis": ["hotcoco>=1.3", "matplotlib", "tqdm"],
        # tools/export.py --format onnx: write the graph and check it in onnxruntime.
        "export": ["onnx", "onnxruntime"],
    },
)
