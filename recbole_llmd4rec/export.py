"""What an LLMD4Rec run leaves for reuse: the distilled CRM as a plain RecBole SASRec
checkpoint, and the item embeddings with their original item tokens."""

import copy

import torch
from recbole.config import Config as RecBoleConfig
from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_llmd4rec.atomic import atomic_torch_save, replacing
from recbole_llmd4rec.distributed import as_one_process

PLUGIN_ONLY_ATTRIBUTES = ("_cmd_args", "user_layers")


def recbole_sasrec_config(config):
    """A stock ``recbole.config.Config`` for SASRec carrying ``config``'s settings.

    Built without running RecBole's constructor (which would read ``sys.argv``): the
    settings are copied and the model is renamed SASRec, so unpickling the checkpoint needs
    RecBole alone, not this plugin.
    """
    stock = RecBoleConfig.__new__(RecBoleConfig)
    for name, value in vars(config).items():
        if name not in PLUGIN_ONLY_ATTRIBUTES:
            setattr(stock, name, copy.deepcopy(value))
    stock.model = "SASRec"
    stock.model_class = SASRec
    stock["model"] = "SASRec"
    return as_one_process(stock)  # trained on several processes, it still loads as one


def export_sasrec_checkpoint(crm, crm_config, path, best_valid_score=None):
    """Save a SASRecD as a RecBole SASRec checkpoint (``load_data_and_model`` reads it)."""
    state = {
        "config": recbole_sasrec_config(crm_config),
        "epoch": 0,
        "cur_step": 0,
        "best_valid_score": best_valid_score,
        "state_dict": crm.sasrec_state_dict(),
        "other_parameter": crm.other_parameter(),
        "optimizer": {},
    }
    atomic_torch_save(state, path)
    return path


def export_item_embeddings(weight, dataset, path, item_field="item_id", embedding_field="item_emb"):
    """Item embeddings as a RecBole atomic file: ``item_id:token  item_emb:float_seq``.

    One line per real item under its original token (``dataset.field2id_token``), so the
    file can be read back with RecBole's ``additional_feat_suffix`` + ``preload_weight``.
    """
    tokens = dataset.field2id_token[item_field]
    weight = weight.detach().cpu()
    with replacing(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(f"{item_field}:token\t{embedding_field}:float_seq\n")
        for index in range(1, len(tokens)):  # id 0 is padding
            handle.write(tokens[index] + "\t" + " ".join(f"{v:.6g}" for v in weight[index].tolist()) + "\n")
    return path


def load_exported_embeddings(path):
    """Read :func:`export_item_embeddings`' file back: ``{token: tensor}``."""
    embeddings = {}
    with open(path, encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            token, values = line.rstrip("\n").split("\t")
            embeddings[token] = torch.tensor([float(v) for v in values.split()])
    return embeddings
