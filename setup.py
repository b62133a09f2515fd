"""Package metadata for bert4seq."""

from setuptools import find_packages, setup

with open("README.md", encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="bert4seq",
    version="0.1.0",
    description=(
        "BERT4Rec sequential recommenders in TensorFlow/Keras 3, exported "
        "for TensorFlow Serving."
    ),
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["bert4seq", "bert4seq.*", "trainers", "serving"]),
    install_requires=[
        "tensorflow>=2.18,<2.22",
        "keras>=3.8,<4",
        "keras-hub>=0.20,<0.40",
        "keras-rs>=0.2,<0.6",
        "tensorflow-serving-api>=2.18,<2.22",
        "tensorboard>=2.18",
        "absl-py>=2.1",
        "grpcio>=1.60",
        "numpy>=1.26",
        "pandas>=2.1",
    ],
    extras_require={
        "parquet": ["pyarrow>=15"],
        "benchmark": ["matplotlib>=3.7"],
        "test": ["pytest>=8", "pyarrow>=15"],
    },
    entry_points={
        "console_scripts": [
            "bert4seq-train = trainers.train:run",
            "bert4seq-serve = serving.serve:run",
            "bert4seq-recommend = serving.recommend:run",
        ]
    },
)
