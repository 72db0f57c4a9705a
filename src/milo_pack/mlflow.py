"""An MLflow flavor that stores models as milo_pack files: no pickle anywhere on the load path.

``save_model`` / ``log_model`` write the model as ``model.milo`` in an MLflow model directory,
with a ``milo_pack`` flavor and a ``python_function`` flavor whose loader is this module, so
``mlflow.pyfunc.load_model``, ``mlflow.models.predict`` and MLflow's batch scoring read it
through milo_pack's validating loader.  scikit-learn, XGBoost and LightGBM models (anything
:func:`milo_pack.dump` saves) work the same.

What it never does:

- take a trust list from the model's own files.  MLflow's skops format kept its trusted types in
  the model's ``MLmodel``, so a crafted model could trust whatever it wanted; here the types a
  load trusts come only from the caller's ``trusted=`` (``load_model``), and the pyfunc loader
  trusts nothing beyond milo_pack's allow-list (everything scikit-learn, XGBoost and LightGBM
  ship needs nothing more);
- read a path from the model's files: the data is always ``model.milo`` in the model's directory;
- unpickle: so a model stays loadable when MLflow disables unsafe deserialization
  (``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``), which MLflow now applies to skops models too.

:func:`untrusted_types` lists what a logged model would need trusted, before loading anything.
MLflow is imported only when a function here is called (``pip install 'milo_pack[mlflow]'``).
"""

from __future__ import annotations

import os
from typing import Any

from . import __version__
from .lazy import DEFAULT_CACHE_BYTES

__all__ = ["FLAVOR_NAME", "save_model", "log_model", "load_model", "untrusted_types"]

FLAVOR_NAME = "milo_pack"
_DATA = "model.milo"
# The methods the pyfunc loader may call, whatever an MLmodel file says.
_PREDICT_FNS = ("predict", "predict_proba", "predict_log_proba", "decision_function",
                "transform", "score_samples")


def _model_file(model_dir: str) -> str:
    return os.path.join(model_dir, _DATA)


def _requirements(model: Any) -> list[str]:
    """pip requirements of a model saved with this flavor: milo_pack and the model's libraries."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = [f"milo_pack=={__version__}"]
    module = type(model).__module__.partition(".")[0]
    dists = {"sklearn": "scikit-learn", "xgboost": "xgboost", "lightgbm": "lightgbm"}
    for dist in sorted({"scikit-learn", "numpy", "scipy", dists.get(module, "scikit-learn")}):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:  # pragma: no cover - numpy and scipy always are
            continue
    return reqs


def save_model(model: Any, path: str, *, mlflow_model: Any = None, signature: Any = None,
               input_example: Any = None, metadata: dict[str, Any] | None = None,
               level: int = 3, pip_requirements: Any = None,
               extra_pip_requirements: Any = None, pyfunc_predict_fn: str = "predict") -> None:
    """Save ``model`` as an MLflow model directory at ``path`` (which must not exist).

    Parameters
    ----------
    model : object
        Anything :func:`milo_pack.dump` saves (scikit-learn, XGBoost, LightGBM models...).
    path : str
        The directory to create.
    mlflow_model : mlflow.models.Model, optional
        The model configuration to add the flavors to (``log_model`` passes one).
    signature, input_example, metadata
        As for MLflow's own flavors (``signature=None`` with an example infers one).
    level : int, default 3
        zstd level for :func:`milo_pack.dump`.
    pip_requirements, extra_pip_requirements
        As for MLflow's own flavors; by default milo_pack and the model's libraries, pinned.
    pyfunc_predict_fn : str, default "predict"
        The model method ``mlflow.pyfunc`` calls (``"predict_proba"``...).
    """
    import yaml
    from mlflow import pyfunc
    from mlflow.models import Model
    from mlflow.models.model import MLMODEL_FILE_NAME
    from mlflow.models.signature import _infer_signature_from_input_example
    from mlflow.models.utils import _save_example
    from mlflow.utils.environment import (
        _CONDA_ENV_FILE_NAME,
        _CONSTRAINTS_FILE_NAME,
        _PYTHON_ENV_FILE_NAME,
        _REQUIREMENTS_FILE_NAME,
        _process_pip_requirements,
        _PythonEnv,
    )
    from mlflow.utils.file_utils import write_to
    from mlflow.utils.model_utils import _validate_and_prepare_target_save_path

    from . import dump, inspect

    if pyfunc_predict_fn not in _PREDICT_FNS:
        raise ValueError(f"pyfunc_predict_fn must be one of {_PREDICT_FNS}")
    if not callable(getattr(model, pyfunc_predict_fn, None)):
        raise TypeError(f"the model has no method {pyfunc_predict_fn!r}")
    path = os.path.abspath(path)
    _validate_and_prepare_target_save_path(path)
    if mlflow_model is None:
        mlflow_model = Model()
    saved_example = _save_example(mlflow_model, input_example, path)
    if signature is None and saved_example is not None:
        signature = _infer_signature_from_input_example(
            saved_example, _MiloPyfunc(model, pyfunc_predict_fn))
    elif signature is False:
        signature = None
    if signature is not None:
        mlflow_model.signature = signature
    if metadata is not None:
        mlflow_model.metadata = metadata
    dump(model, _model_file(path), level=level)
    root_type = inspect(_model_file(path))["root"].get("$type", "")
    pyfunc.add_to_model(mlflow_model, loader_module="milo_pack.mlflow", data=_DATA,
                        conda_env=_CONDA_ENV_FILE_NAME, python_env=_PYTHON_ENV_FILE_NAME)
    mlflow_model.add_flavor(FLAVOR_NAME, milo_pack_version=__version__, data=_DATA,
                            model_type=root_type, predict_fn=pyfunc_predict_fn)
    mlflow_model.save(os.path.join(path, MLMODEL_FILE_NAME))

    default = _requirements(model) if pip_requirements is None else None
    conda_env, pip_reqs, constraints = _process_pip_requirements(
        default, pip_requirements, extra_pip_requirements)
    with open(os.path.join(path, _CONDA_ENV_FILE_NAME), "w") as f:
        yaml.safe_dump(conda_env, stream=f, default_flow_style=False)
    if constraints:
        write_to(os.path.join(path, _CONSTRAINTS_FILE_NAME), "\n".join(constraints))
    write_to(os.path.join(path, _REQUIREMENTS_FILE_NAME), "\n".join(pip_reqs))
    _PythonEnv.current().to_yaml(os.path.join(path, _PYTHON_ENV_FILE_NAME))


def log_model(model: Any, name: str | None = None, *, registered_model_name: str | None = None,
              signature: Any = None, input_example: Any = None, **kwargs: Any) -> Any:
    """Log ``model`` to the active MLflow run (see :func:`save_model` for the options).

    Returns
    -------
    mlflow.models.model.ModelInfo
        With ``model_uri`` to pass to :func:`load_model` or ``mlflow.pyfunc.load_model``.
    """
    import sys

    from mlflow.models import Model

    return Model.log(artifact_path=None, name=name, flavor=sys.modules[__name__],
                     registered_model_name=registered_model_name, model=model,
                     signature=signature, input_example=input_example, **kwargs)


def _local_dir(model_uri: str, dst_path: str | None) -> str:
    from mlflow.tracking.artifact_utils import _download_artifact_from_uri

    local = str(_download_artifact_from_uri(artifact_uri=model_uri, output_path=dst_path))
    return local if os.path.isdir(local) else os.path.dirname(local)


def untrusted_types(model_uri: str, *, dst_path: str | None = None) -> list[tuple[str, str]]:
    """``(tag, graph path)`` of every type the logged model needs beyond the allow-list.

    Nothing is built: only the model file's manifest is read and validated.
    """
    from . import untrusted_types as _untrusted

    return _untrusted(_model_file(_local_dir(model_uri, dst_path)))


def load_model(model_uri: str, *, dst_path: str | None = None, trusted: Any = (),
               lazy: bool = False, cache_bytes: int | None = DEFAULT_CACHE_BYTES) -> Any:
    """Load a model logged with this flavor, as the object that was saved.

    Parameters
    ----------
    model_uri : str
        Any MLflow model URI (``runs:/<id>/model``, ``models:/<name>/<version>``, a path...).
    dst_path : str, optional
        Where to download the artifacts.
    trusted : sequence of str
        Type tags to allow beyond milo_pack's allow-list: only from you, never from the model.
        :func:`untrusted_types` lists what a model needs.
    lazy, cache_bytes
        Load ensemble members when used (see :meth:`milo_pack.MiloFile.load`).

    Raises
    ------
    milo_pack.errors.UntrustedTypeError
        The model needs types you did not trust (listed with their graph paths).
    """
    from .reader import MiloFile

    handle = MiloFile(_model_file(_local_dir(model_uri, dst_path)))
    try:
        model = handle.load(trusted=trusted, lazy=lazy, cache_bytes=cache_bytes)
    except BaseException:
        handle.close()
        raise
    if not lazy:
        handle.close()
    return model  # lazy: the model keeps its file open while it is used


class _MiloPyfunc:
    """What ``mlflow.pyfunc`` calls: the model's predict method (``predict_fn``)."""

    def __init__(self, model: Any, predict_fn: str = "predict") -> None:
        self.model = model
        self.predict_fn = predict_fn

    def get_raw_model(self) -> Any:
        """The loaded model itself."""
        return self.model

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        return getattr(self.model, self.predict_fn)(model_input)


def _load_pyfunc(path: str, model_config: Any = None) -> _MiloPyfunc:
    """The ``python_function`` loader.  Trusts nothing beyond the allow-list (no trust list is
    read from the model's files, ``model_config`` included) and reads only ``model.milo``."""
    from . import load

    if os.path.isdir(path):
        model_dir, data = path, _model_file(path)
    else:
        model_dir, data = os.path.dirname(path), path
    if os.path.basename(data) != _DATA:
        from .errors import ContainerError

        raise ContainerError(f"a milo_pack MLflow model's data is {_DATA!r}, not "
                             f"{os.path.basename(data)!r}")
    predict_fn = "predict"
    try:
        from mlflow.models import Model

        conf = Model.load(model_dir).flavors.get(FLAVOR_NAME, {})
        predict_fn = conf.get("predict_fn", "predict")
    except Exception:  # noqa: BLE001 - no MLmodel beside the data: plain predict
        pass
    if predict_fn not in _PREDICT_FNS:
        from .errors import ManifestError

        raise ManifestError(f"unsupported predict_fn {predict_fn!r} in the MLmodel file")
    return _MiloPyfunc(load(data), predict_fn)
