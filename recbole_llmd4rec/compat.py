"""Compatibility shims for recbole 1.2.1 on today's numpy, torch and setuptools.

Every shim lives here and nowhere else; each names the library version it serves.
The module must be imported before anything from ``recbole`` (the package
``__init__`` does this first), and applying it twice is harmless.

1. numpy >= 2.0 removed ``np.float_``, ``np.complex_``, ``np.unicode_`` and ``np.bool8``.
   ``recbole.config.Config.compatibility_settings`` reads the first three and ray 2.6.3
   (imported by ``recbole.quick_start``) reads the last. The aliases point at the types
   numpy itself documents as their replacements.
2. torch >= 2.6 loads checkpoints with ``weights_only=True``. RecBole 1.2.1 pickles its
   ``Config`` object into every checkpoint, so best-model reload, ``resume_checkpoint``,
   ``load_data_and_model`` and S3Rec's fine-tune loading fail. Instead of switching
   ``torch.load`` back to full pickle for every file, the few RecBole classes a
   checkpoint holds join torch's allow-list of safe globals, and a default ``torch.load``
   reads through an allow-list unpickler that, unlike torch 2.13's weights-only reader,
   understands the pickle protocol 4 RecBole saves with.
3. recbole 1.2.1 switches on autograd anomaly detection for the whole process at import
   time (``recbole/model/sequential_recommender/sine.py``). It checks every gradient for
   NaN, which slows every training step; switching it back off changes no result.
4. recbole 1.2.1 restores ``np.float``, ``np.int``, ... only when a ``Config`` is built;
   its evaluator needs them also after ``load_data_and_model``, which builds none.
5. Deprecation warnings one library raises about another, which a user can do nothing about,
   are silenced by their exact message: ray 2.6.3 (imported by recbole) imports
   ``pkg_resources``, which warns on every import since setuptools 67; recbole 1.2.1's trainer builds
   ``torch.cuda.amp.GradScaler`` (deprecated since torch 2.4) on every epoch, peft 0.21
   reads ``is_gradient_checkpointing`` (deprecated in transformers 5) when wrapping a model,
   and recbole 1.2.1's ``Dataset`` fills missing values with chained
   ``df[col].fillna(..., inplace=True)`` and measures token sequences with
   ``Series.agg(len)``, which pandas 2.2+ flags because they stop working in pandas 3; under
   the ``pandas<3`` that setup.py pins both still do what RecBole means; recbole 1.2.1's
   ``Interaction.sort`` calls ``np.argsort`` on a torch tensor, whose ``__array_wrap__`` numpy 2
   flags (the sort is right; only tests show this one, as Python hides library deprecations).
6. transformers 5.24 renamed the decoder models' ``past_key_values`` argument to ``cache``
   (the old name warns and goes in 5.40); :func:`cache_keyword` names the one a model takes.
7. transformers 5.x reads a GGUF file of an architecture it cannot load lazily (llama, hence
   SmolLM2, among them) with ``load_gguf_checkpoint``, which dequantizes every tensor in the
   file before it drops those the model lacks; :func:`gguf_blocks_below` hides the decoder
   blocks from a given index on from gguf's reader while a cut model loads, so their weights
   are never read.
8. recbole 1.2.1's ``Trainer`` opens a tensorboard folder (``log_tensorboard/``) in every process
   of a multi-process run; the ranks but the first get a writer that writes nothing, so only
   rank 0 writes files.
"""

import contextlib
import functools
import importlib
import inspect
import pickle
import re
import types
import warnings

import numpy as np
from torch import _weights_only_unpickler

_NUMPY2_ALIASES = {  # numpy 2.0 removed these names
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
    "bool8": np.bool_,
}


NUMPY_SCALAR_DTYPES = (
    np.dtypes.Float64DType,
    np.dtypes.Float32DType,
    np.dtypes.Int64DType,
    np.dtypes.Int32DType,
    np.dtypes.BoolDType,
)


def _restore_numpy_aliases():
    for name, numpy_type in _NUMPY2_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, numpy_type)


def _allowed_global(full_name):
    allowed = _weights_only_unpickler._get_allowed_globals().get(full_name)
    if allowed is None:
        allowed = _weights_only_unpickler._get_user_allowed_globals().get(full_name)
    return allowed


def _model_class_reference(module, name):
    """A RecBole or plugin model class, which a pickled Config names but never builds."""
    if module.split(".")[0] not in ("recbole", "recbole_llmd4rec"):
        return None
    from recbole.model.abstract_recommender import AbstractRecommender

    candidate = getattr(importlib.import_module(module), name, None)
    if isinstance(candidate, type) and issubclass(candidate, AbstractRecommender):
        return candidate
    return None


class RefusedCheckpointContent(pickle.UnpicklingError):
    """A checkpoint asks for a class or a call outside the allow-list: refused, not run."""


class CheckpointUnpickler(pickle._Unpickler):
    """A pickle reader that builds only allow-listed globals, for every pickle protocol.

    The allow-list is torch's own weights-only list plus whatever was added with
    ``torch.serialization.add_safe_globals`` (here: the classes of RecBole's checkpoints).
    torch 2.13's weights-only reader stops at protocol-4 opcodes, and RecBole saves with
    ``pickle_protocol=4``; this reader applies the same allow-list through Python's
    documented ``find_class`` restriction instead. RecBole's Config also holds its model
    class: model classes may be named, but no opcode may call or instantiate them.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module, name):
        full_name = f"{module}.{name}"
        found = _allowed_global(full_name)
        if found is None:
            found = _model_class_reference(module, name)
        if found is None:
            raise RefusedCheckpointContent(
                f"it holds {full_name}, which is not among the classes a checkpoint may hold (in Python, "
                f"torch.serialization.add_safe_globals allows one more for a file you trust)"
            )
        return found

    @staticmethod
    def _check_callable(target):
        allowed = (
            *_weights_only_unpickler._get_allowed_globals().values(),
            *_weights_only_unpickler._get_user_allowed_globals().values(),
        )
        if not any(target is candidate for candidate in allowed):
            raise RefusedCheckpointContent(f"it asks to call {target!r}, which is not allowed")

    def _load_checked(opcode, stack_depth):
        original = pickle._Unpickler.dispatch[opcode[0]]

        def load_checked(self):
            self._check_callable(self.stack[-stack_depth])
            original(self)

        return load_checked

    # The opcodes that call or instantiate what is on the stack, with the target's depth.
    dispatch[pickle.REDUCE[0]] = _load_checked(pickle.REDUCE, 2)
    dispatch[pickle.NEWOBJ[0]] = _load_checked(pickle.NEWOBJ, 2)
    dispatch[pickle.NEWOBJ_EX[0]] = _load_checked(pickle.NEWOBJ_EX, 3)
    del _load_checked

    def load_obj(self):
        raise RefusedCheckpointContent("it builds objects with protocol-0/1 OBJ opcodes, which are not allowed")

    def load_inst(self):
        raise RefusedCheckpointContent("it builds objects with protocol-0/1 INST opcodes, which are not allowed")

    dispatch[pickle.OBJ[0]] = load_obj
    dispatch[pickle.INST[0]] = load_inst


def _checkpoint_pickle_load(file, **kwargs):
    return CheckpointUnpickler(file, **kwargs).load()


# What torch.load needs of a ``pickle_module``.
checkpoint_pickle = types.SimpleNamespace(
    __name__="recbole_llmd4rec.compat.checkpoint_pickle",
    Unpickler=CheckpointUnpickler,
    load=_checkpoint_pickle_load,
)


def _allow_recbole_checkpoint_globals():
    """torch >= 2.6: read RecBole's checkpoints through the allow-list reader by default."""
    import torch
    import yaml
    from recbole.config import Config
    from recbole.utils import EvaluatorType, FeatureSource, FeatureType, InputType, ModelType

    torch.serialization.add_safe_globals(
        [
            Config,
            EvaluatorType,
            FeatureSource,
            FeatureType,
            InputType,
            ModelType,
            # Config keeps a reference to the yaml loader class it parsed with.
            yaml.FullLoader,
            # Scores such as best_valid_score are numpy scalars.
            np._core.multiarray.scalar,
            np.dtype,
            *NUMPY_SCALAR_DTYPES,
        ]
    )
    if getattr(torch.load, "_llmd4rec_checkpoint_reader", False):
        return
    torch_load = torch.load

    @functools.wraps(torch_load)
    def load(f, map_location=None, pickle_module=None, *, weights_only=None, **kwargs):
        # Only the default call changes: an explicit weights_only or pickle_module is kept.
        if weights_only is None and pickle_module is None:
            return torch_load(f, map_location, checkpoint_pickle, weights_only=False, **kwargs)
        return torch_load(f, map_location, pickle_module, weights_only=weights_only, **kwargs)

    load._llmd4rec_checkpoint_reader = True
    torch.load = load


def allow_checkpoint_class(cls):
    """Add one more class (e.g. a Config subclass) to the checkpoint allow-list."""
    import torch

    torch.serialization.add_safe_globals([cls])


def _switch_off_anomaly_detection():
    """recbole 1.2.1: undo ``torch.autograd.set_detect_anomaly(True)`` done at import."""
    import torch
    import recbole.model.sequential_recommender  # noqa: F401  (runs the import-time switch)

    torch.autograd.set_detect_anomaly(False)


def _recbole_numpy_aliases():
    """recbole 1.2.1 sets ``np.float``, ``np.int``, ... inside ``Config.__init__`` only; a
    checkpoint unpickled without building a Config (``load_data_and_model``) then fails in
    the evaluator's ``np.float``. Run RecBole's own alias setting once at import."""
    from recbole.config import Config

    Config.compatibility_settings(None)


def cache_keyword(model):
    """The keyword ``model.forward`` takes its key/value cache under: ``cache`` from transformers
    5.24 on, ``past_key_values`` before (see 6. above)."""
    parameters = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


GGUF_BLOCK = re.compile(r"blk\.(\d+)\.")  # GGUF's name of decoder block i's tensors: blk.<i>.<part>


@contextlib.contextmanager
def gguf_blocks_below(num_blocks):
    """While a model loads from a GGUF file, gguf's reader lists only the tensors of decoder blocks
    ``0 .. num_blocks - 1`` (and those of no block); None: all of them (see 7. above)."""
    if num_blocks is None:
        yield
        return
    import gguf

    full_reader = gguf.GGUFReader

    class FirstBlocksReader(full_reader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.tensors = [tensor for tensor in self.tensors
                            if not (block := GGUF_BLOCK.match(tensor.name)) or int(block.group(1)) < num_blocks]

    gguf.GGUFReader = FirstBlocksReader
    try:
        yield
    finally:
        gguf.GGUFReader = full_reader


class _NoTensorboard:
    """A SummaryWriter that writes nothing (8. above): every method is a no-op."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _tensorboard_on_rank0_only():
    """recbole 1.2.1: ``get_tensorboard`` as the Trainer reads it, silent on ranks other than 0."""
    import torch.distributed as dist
    from recbole.trainer import trainer as recbole_trainer

    if getattr(recbole_trainer.get_tensorboard, "_llmd4rec_rank0_only", False):
        return
    get_tensorboard = recbole_trainer.get_tensorboard

    @functools.wraps(get_tensorboard)
    def on_rank0(logger):
        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return _NoTensorboard()
        return get_tensorboard(logger)

    on_rank0._llmd4rec_rank0_only = True
    recbole_trainer.get_tensorboard = on_rank0


_FOREIGN_DEPRECATIONS = (  # (regex matched at the start of the message, category): see 5. above
    ("pkg_resources is deprecated", UserWarning),
    (r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated", FutureWarning),
    (r"`is_gradient_checkpointing` is deprecated", FutureWarning),
    (r"A value is trying to be set on a copy of a DataFrame or Series through chained assignment", FutureWarning),
    (r"using <built-in function len> in Series\.agg cannot aggregate", FutureWarning),
    (r"__array_wrap__ must accept context and return_scalar arguments", DeprecationWarning),
)


def apply():
    _restore_numpy_aliases()
    _recbole_numpy_aliases()
    for message, category in _FOREIGN_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=category)
    _allow_recbole_checkpoint_globals()
    _switch_off_anomaly_detection()
    _tensorboard_on_rank0_only()


apply()
