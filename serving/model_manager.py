"""Loading, version tracking and hot swapping of one served SavedModel.

The layout is TensorFlow Serving's: `<model_base_path>/<version>/saved_model.pb`
with `variables/` and `assets/` next to it, where `<version>` is a decimal
integer. The highest version is served. Directories with other names, such as
`.tmp-3` left by an exporter that writes and then renames, are ignored.
"""

import dataclasses
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from serving.errors import ServingError, grpc_code_from_value
from serving.tensors import dtype_name, format_shape, is_shape_compatible

logger = logging.getLogger(__name__)

SERVE_TAG = "serve"
DEFAULT_SIGNATURE_NAME = "serving_default"

_VERSION_DIR_PATTERN = re.compile(r"^[0-9]+$")
_MAX_VERSION = 2**63 - 1  # Versions are int64 in the ModelSpec proto.


class ModelLoadError(RuntimeError):
    """Raised when a version directory cannot be loaded as a SavedModel."""


def find_versions(model_base_path: str) -> list[int]:
    """Return the integer version numbers under `model_base_path`, ascending.

    Only directories whose name is a decimal integer count, as in TensorFlow
    Serving. Files and names such as `.tmp-3` or `1.bak` are skipped.

    Args:
        model_base_path: Directory that contains the version directories.

    Raises:
        FileNotFoundError: If `model_base_path` is not a directory.
    """
    if not tf.io.gfile.isdir(model_base_path):
        raise FileNotFoundError(
            f"Model base path {model_base_path!r} does not exist or is not a "
            "directory. Pass --model_base_path (or model_base_path=) pointing to a "
            "directory that contains integer version directories, e.g. "
            f"{os.path.join(model_base_path, '1')}/saved_model.pb."
        )

    versions = []
    for entry in tf.io.gfile.listdir(model_base_path):
        name = entry.rstrip("/")
        if not _VERSION_DIR_PATTERN.match(name):
            continue
        version = int(name)
        if version > _MAX_VERSION:
            continue
        if tf.io.gfile.isdir(os.path.join(model_base_path, name)):
            versions.append(version)
    return sorted(set(versions))


def version_directory(model_base_path: str, version: int) -> str:
    """Return the path of `version` under `model_base_path`.

    Falls back to zero-padded spellings (e.g. `0001`) that `find_versions`
    accepts, so the returned directory is the one that exists.

    Args:
        model_base_path: Directory that contains the version directories.
        version: Version number.
    """
    plain = os.path.join(model_base_path, str(version))
    if tf.io.gfile.isdir(plain):
        return plain
    for entry in tf.io.gfile.listdir(model_base_path):
        name = entry.rstrip("/")
        if _VERSION_DIR_PATTERN.match(name) and int(name) == version:
            return os.path.join(model_base_path, name)
    return plain


def read_signature_defs(export_dir: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    """Read the SignatureDefs of the `serve` MetaGraph of a SavedModel.

    Args:
        export_dir: Directory with `saved_model.pb` or `saved_model.pbtxt`.

    Raises:
        ModelLoadError: If neither file exists or no MetaGraph has the tag `serve`.
    """
    binary_path = os.path.join(export_dir, "saved_model.pb")
    text_path = os.path.join(export_dir, "saved_model.pbtxt")
    saved_model = saved_model_pb2.SavedModel()
    if tf.io.gfile.exists(binary_path):
        with tf.io.gfile.GFile(binary_path, "rb") as f:
            saved_model.ParseFromString(f.read())
    elif tf.io.gfile.exists(text_path):
        with tf.io.gfile.GFile(text_path, "r") as f:
            text_format.Parse(f.read(), saved_model)
    else:
        raise ModelLoadError(
            f"No saved_model.pb or saved_model.pbtxt in {export_dir!r}."
        )

    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ModelLoadError(
        f"The SavedModel in {export_dir!r} has no MetaGraph tagged {SERVE_TAG!r}. "
        "Export it with tf.saved_model.save, which adds that tag."
    )


class Signature:
    """One callable signature of a loaded model, with request validation.

    Args:
        model_name: Name the model is served under, used in error messages.
        version: Version of the model, used in error messages.
        name: Signature key, e.g. "serving_default".
        signature_def: The SignatureDef from the SavedModel.
        function: The concrete function that `tf.saved_model.load` returned
            for this signature. It takes the inputs as keyword arguments and
            returns a dict of output tensors.
    """

    def __init__(
        self,
        model_name: str,
        version: int,
        name: str,
        signature_def: meta_graph_pb2.SignatureDef,
        function: Any,
    ):
        self.model_name = model_name
        self.version = version
        self.name = name
        self.signature_def = signature_def
        self._function = function

    @property
    def input_names(self) -> list[str]:
        """Sorted input keys of the signature."""
        return sorted(self.signature_def.inputs)

    @property
    def output_names(self) -> list[str]:
        """Sorted output keys of the signature."""
        return sorted(self.signature_def.outputs)

    def input_dtype(self, name: str) -> tf.DType:
        """Return the dtype that the signature declares for input `name`."""
        return tf.as_dtype(self.signature_def.inputs[name].dtype)

    def check_input_names(self, names: Iterable[str]) -> None:
        """Raise INVALID_ARGUMENT unless `names` are exactly the signature's inputs.

        Args:
            names: Input keys of the request.
        """
        sent = set(names)
        expected = set(self.signature_def.inputs)
        if sent == expected:
            return
        missing = sorted(expected - sent)
        extra = sorted(sent - expected)
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Request inputs do not match signature {self.name!r} of model "
            f"{self.model_name!r}: expected {{{', '.join(sorted(expected))}}}, missing "
            f"{{{', '.join(missing)}}}, extra {{{', '.join(extra)}}}.",
        )

    def check_input(self, name: str, dtype: int, shape: Sequence[int]) -> None:
        """Raise INVALID_ARGUMENT unless input `name` has the declared dtype and shape.

        Args:
            name: Input key, already checked by `check_input_names`.
            dtype: `DataType` enum value of the request tensor.
            shape: Dimension sizes of the request tensor.
        """
        info = self.signature_def.inputs[name]
        if dtype != info.dtype:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Input {name!r} of signature {self.name!r} expects dtype "
                f"{dtype_name(info.dtype)}, but the request has {dtype_name(dtype)}.",
            )
        if not is_shape_compatible(info.tensor_shape, shape):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Input {name!r} of signature {self.name!r} expects shape "
                f"{format_shape(info.tensor_shape)} (-1 is any size), but the request "
                f"has shape {format_shape(shape)}.",
            )

    def resolve_output_filter(self, output_filter: Sequence[str]) -> list[str]:
        """Return the output keys to compute: `output_filter`, or all when empty.

        Args:
            output_filter: Output keys the client requested.

        Raises:
            ServingError: INVALID_ARGUMENT for an unknown or repeated key.
        """
        if not output_filter:
            return self.output_names
        seen: set[str] = set()
        for alias in output_filter:
            if alias not in self.signature_def.outputs:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"output_filter names {alias!r}, which is not an output of "
                    f"signature {self.name!r}. Outputs: "
                    f"{{{', '.join(self.output_names)}}}.",
                )
            if alias in seen:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"output_filter names {alias!r} more than once.",
                )
            seen.add(alias)
        return list(output_filter)

    def run(
        self,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> dict[str, np.ndarray]:
        """Validate `inputs`, call the signature and return the requested outputs.

        Args:
            inputs: One array per signature input. String inputs are object
                arrays of `bytes`. Their dtype must convert to the declared
                dtype without loss.
            output_filter: Output keys to return. Empty returns all outputs.

        Raises:
            ServingError: INVALID_ARGUMENT for bad inputs, or the code of the
                TensorFlow error raised while running the graph.
        """
        self.check_input_names(inputs)
        outputs = self.resolve_output_filter(output_filter)

        tensors = {}
        for name, array in inputs.items():
            dtype = self.input_dtype(name)
            self.check_input(name, dtype.as_datatype_enum, np.shape(array))
            tensors[name] = tf.constant(array, dtype=dtype)

        try:
            results = self._function(**tensors)
        except tf.errors.OpError as error:
            raise ServingError(
                grpc_code_from_value(error.error_code),
                f"Running signature {self.name!r} of model {self.model_name!r} version "
                f"{self.version} failed: {error.message}",
            ) from error
        except (TypeError, ValueError) as error:
            # The concrete function rejects inputs that pass the SignatureDef
            # checks but not its own TensorSpecs.
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Signature {self.name!r} of model {self.model_name!r} rejected the "
                f"inputs: {error}",
            ) from error

        # NOTE: every output is computed even with an output_filter, because a
        # concrete function cannot be pruned per request. TF Serving prunes.
        return {name: results[name].numpy() for name in outputs}


@dataclasses.dataclass
class VersionStatus:
    """State of one model version, in the terms of `ModelVersionStatus`.

    Attributes:
        version: Version number.
        state: Name of a `ModelVersionStatus.State`, e.g. "AVAILABLE" or "END".
        error_code: Name of a gRPC status code, "OK" unless loading failed.
        error_message: Reason of the load failure, empty when there was none.
    """

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


class LoadedModel:
    """One loaded version of a SavedModel and its signatures.

    Args:
        name: Name the model is served under.
        version: Version number of the directory it was loaded from.
        path: The version directory.
    """

    def __init__(self, name: str, version: int, path: str):
        self.name = name
        self.version = version
        self.path = path
        self.signature_defs = read_signature_defs(path)
        self._saved_model = tf.saved_model.load(path, tags=[SERVE_TAG])

        # Keep only signatures that both the proto and the loaded object have.
        # tf.saved_model.load drops none in practice, but a mismatch must not
        # lead to a KeyError at request time.
        functions = self._saved_model.signatures
        self._signatures = {
            key: Signature(name, version, key, signature_def, functions[key])
            for key, signature_def in self.signature_defs.items()
            if key in functions
        }

    @property
    def signature_names(self) -> list[str]:
        """Sorted signature keys that can be called."""
        return sorted(self._signatures)

    def signature(self, signature_name: str) -> Signature:
        """Return the signature `signature_name`, or "serving_default" for "".

        Args:
            signature_name: Signature key from the request.

        Raises:
            ServingError: FAILED_PRECONDITION if the model has no such
                signature, the code that TensorFlow Serving uses for Predict.
        """
        key = signature_name or DEFAULT_SIGNATURE_NAME
        signature = self._signatures.get(key)
        if signature is None:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Serving signature key {key!r} not found in model {self.name!r} "
                f"version {self.version}. Available signatures: "
                f"{', '.join(self.signature_names) or '(none)'}.",
            )
        return signature

    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        """Return all SignatureDefs as the `SignatureDefMap` of GetModelMetadata."""
        signature_def_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in self.signature_defs.items():
            signature_def_map.signature_def[key].CopyFrom(signature_def)
        return signature_def_map


def load_model(model_name: str, model_base_path: str, version: int) -> LoadedModel:
    """Load `version` of the model under `model_base_path`.

    Args:
        model_name: Name the model is served under.
        model_base_path: Directory that contains the version directories.
        version: Version to load.

    Raises:
        ModelLoadError: If the directory is not a loadable SavedModel.
    """
    path = version_directory(model_base_path, version)
    try:
        return LoadedModel(model_name, version, path)
    except ModelLoadError:
        raise
    except Exception as error:
        # tf.saved_model.load raises many unrelated types (OSError, ValueError,
        # DecodeError, tf.errors.*), so all of them become ModelLoadError.
        raise ModelLoadError(
            f"Failed to load version {version} of model {model_name!r} from {path!r}: "
            f"{type(error).__name__}: {error}"
        ) from error


class ModelManager:
    """Serves the highest version under a base path and hot-swaps newer ones.

    Call `load()` once, then `start_polling()` to watch for new versions.
    Requests that started on the old version finish on it, because they hold
    a reference to its `LoadedModel`.

    Args:
        model_name: Name the model is served under.
        model_base_path: Directory that contains the version directories.
        file_system_poll_wait_seconds: Interval between scans for a new
            version, in seconds. 0 loads once and never scans again.
    """

    def __init__(
        self,
        model_name: str,
        model_base_path: str,
        file_system_poll_wait_seconds: float = 1.0,
    ):
        if file_system_poll_wait_seconds < 0:
            raise ValueError(
                "file_system_poll_wait_seconds must be >= 0, got "
                f"{file_system_poll_wait_seconds}."
            )
        self.model_name = model_name
        self.model_base_path = model_base_path
        self.file_system_poll_wait_seconds = file_system_poll_wait_seconds

        self._lock = threading.Lock()
        self._model: LoadedModel | None = None
        self._statuses: dict[int, VersionStatus] = {}
        # Fingerprint of the files of each version that failed to load, so a
        # broken version is retried only after its files change.
        self._failed_fingerprints: dict[int, tuple] = {}
        self._warned_no_versions = False
        self._stop_event = threading.Event()
        self._poll_thread: threading.Thread | None = None

    def load(self) -> LoadedModel:
        """Load the highest version and return it.

        Raises:
            FileNotFoundError: If the base path is missing or has no version.
            ModelLoadError: If the highest version fails to load.
        """
        versions = find_versions(self.model_base_path)
        if not versions:
            example = os.path.join(self.model_base_path, "1")
            raise FileNotFoundError(
                "No version directory found under model base path "
                f"{self.model_base_path!r}. Export the model into an integer-named "
                f"subdirectory such as {example!r} (with saved_model.pb inside). Names "
                "that are not integers, such as '.tmp-1', are ignored."
            )

        version = versions[-1]
        logger.info(
            "Loading model %r version %d from %s",
            self.model_name,
            version,
            self.model_base_path,
        )
        model = load_model(self.model_name, self.model_base_path, version)
        with self._lock:
            self._model = model
            self._statuses[version] = VersionStatus(version, "AVAILABLE")
        logger.info(
            "Loaded model %r version %d with signatures: %s",
            self.model_name,
            version,
            ", ".join(model.signature_names),
        )
        return model

    def start_polling(self) -> None:
        """Start the background thread that hot-swaps new versions.

        Does nothing when `file_system_poll_wait_seconds` is 0.
        """
        if self.file_system_poll_wait_seconds == 0 or self._poll_thread is not None:
            return
        self._stop_event.clear()
        self._poll_thread = threading.Thread(
            target=self._poll_loop,
            name=f"version-poller-{self.model_name}",
            daemon=True,
        )
        self._poll_thread.start()

    def stop(self) -> None:
        """Stop the polling thread and wait for a load in progress to finish."""
        self._stop_event.set()
        if self._poll_thread is not None:
            self._poll_thread.join()
            self._poll_thread = None

    @property
    def current(self) -> LoadedModel:
        """The version that requests without a version number get."""
        with self._lock:
            if self._model is None:
                raise RuntimeError(
                    "ModelManager.load() must be called before serving requests."
                )
            return self._model

    def get_model(
        self, model_name: str, version: int | None = None, version_label: str = ""
    ) -> LoadedModel:
        """Return the loaded model that a request's ModelSpec selects.

        Args:
            model_name: `model_spec.name` of the request.
            version: `model_spec.version`, or None for the latest.
            version_label: `model_spec.version_label`. Labels are not supported.

        Raises:
            ServingError: NOT_FOUND for another model name or a version that
                is not loaded, INVALID_ARGUMENT for a version label.
        """
        if version_label:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Unrecognized servable version label: {version_label!r}. This server "
                "does not support version labels. Set model_spec.version or leave "
                "both unset.",
            )
        model = self.current
        request_text = (
            f"Latest({model_name})"
            if version is None
            else f"Specific({model_name}, {version})"
        )
        if model_name != self.model_name or (
            version is not None and version != model.version
        ):
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: {request_text}. This server serves "
                f"model {self.model_name!r} version {model.version}.",
            )
        return model

    def version_statuses(
        self, model_name: str, version: int | None = None
    ) -> list[VersionStatus]:
        """Return the status of one or all known versions, for GetModelStatus.

        Known versions are the loaded one, versions replaced by a hot swap
        (state END) and versions that failed to load (state END with an error).

        Args:
            model_name: Model name of the request.
            version: Version of the request, or None for all versions.

        Raises:
            ServingError: NOT_FOUND for another model name or an unknown version.
        """
        with self._lock:
            statuses = dict(self._statuses)
        if model_name != self.model_name:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find any versions of model {model_name!r}. This server "
                f"serves model {self.model_name!r}.",
            )
        if version is None:
            return [statuses[key] for key in sorted(statuses)]
        if version not in statuses:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find version {version} of model {model_name!r}. Known "
                f"versions: {', '.join(str(key) for key in sorted(statuses))}.",
            )
        return [statuses[version]]

    def poll_once(self) -> None:
        """Scan the base path once and hot-swap to its highest version.

        The highest version is also loaded when it is lower than the served
        one, which happens after the served directory is deleted. When the
        load fails, the served version stays and the error is logged.
        """
        try:
            versions = find_versions(self.model_base_path)
        except FileNotFoundError as error:
            self._warn_no_versions(str(error))
            return
        if not versions:
            self._warn_no_versions(
                f"No version directory found under {self.model_base_path!r}."
            )
            return
        self._warned_no_versions = False

        target = versions[-1]
        current = self.current
        if target == current.version:
            return

        path = version_directory(self.model_base_path, target)
        fingerprint = _directory_fingerprint(path)
        if self._failed_fingerprints.get(target) == fingerprint:
            return

        logger.info(
            "Found version %d of model %r while serving version %d. Loading it.",
            target,
            self.model_name,
            current.version,
        )
        try:
            model = load_model(self.model_name, self.model_base_path, target)
        except ModelLoadError as error:
            self._failed_fingerprints[target] = fingerprint
            with self._lock:
                self._statuses[target] = VersionStatus(
                    target, "END", "UNKNOWN", str(error)
                )
            logger.error(
                "%s Still serving version %d. The load is retried when the files of "
                "version %d change.",
                error,
                current.version,
                target,
            )
            return

        with self._lock:
            previous = self._model
            self._model = model
            self._statuses[target] = VersionStatus(target, "AVAILABLE")
            if previous is not None:
                self._statuses[previous.version] = VersionStatus(
                    previous.version, "END"
                )
        self._failed_fingerprints.pop(target, None)
        logger.info(
            "Hot-swapped model %r from version %d to version %d",
            self.model_name,
            current.version,
            target,
        )

    def _poll_loop(self) -> None:
        while not self._stop_event.wait(self.file_system_poll_wait_seconds):
            try:
                self.poll_once()
            except Exception:  # The poller must survive any file-system error.
                logger.exception(
                    "Polling %s for new versions failed", self.model_base_path
                )

    def _warn_no_versions(self, reason: str) -> None:
        # Log once per disappearance, not once per poll.
        if self._warned_no_versions:
            return
        self._warned_no_versions = True
        logger.warning(
            "%s Still serving model %r version %d.",
            reason,
            self.model_name,
            self.current.version,
        )


def _directory_fingerprint(path: str) -> tuple:
    """Return (relative path, size, mtime) of every file under `path`, sorted."""
    entries = []
    for directory, _, files in tf.io.gfile.walk(path):
        for file_name in files:
            file_path = os.path.join(directory, file_name)
            try:
                stat = tf.io.gfile.stat(file_path)
            except tf.errors.NotFoundError:
                continue  # Deleted between the listing and the stat.
            entries.append(
                (os.path.relpath(file_path, path), stat.length, stat.mtime_nsec)
            )
    return tuple(sorted(entries))
