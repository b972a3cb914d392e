"""E4SRec: an LLM-centric sequential recommender on a Hugging Face decoder LM.

References: "E4SRec: An Elegant Effective Efficient Extensible Solution of Large Language
Models for Sequential Recommendation" (Li et al., 2023); its use as the LLM-centric model in
LLMD4Rec (arXiv 2505.18120), Sec. 4.1 and Eq. 1-5.

Sec. 4.1: item ID embeddings ``E`` (|I| x d) from a CRM, frozen here, are projected to the
LM's width by ``W_in`` (d -> D); the instruction prompt's token embeddings, the projected
history and a short response header form the input; the frozen backbone with LoRA adapters
encodes it; the last position's hidden state ``h`` is the user state; ``y_l = W_out h``
scores all items (Eq. 1) and ``L_rec`` is cross-entropy over all items (Eq. 2). With the
CRM's logits as teacher (Eq. 3-5):

    L_LLM = L_rec + gamma * mean_b( w1_b * KL(softmax(y_c / T1) || softmax(y_l / T1))_b )

LLM-SRec (Kim et al., KDD 2025, "Lost in Sequence: Do Large Language Models Understand
Sequential Recommendation?"), LLMD4Rec's other LLM-centric baseline (its Sec. 5.1.2), distils
the user representation of a pretrained, frozen CRM instead of its logits. On this model's
``L_rec`` (LLM-SRec adds its terms to a recommender of its own, with its own loss):

    L_LLM = L_rec + w * ( mean_b L_Distill(g_l(h)_b, g_c(o)_b) + u * (L_Uniform(g_l(h)) + L_Uniform(g_c(o))) )

``h`` is this model's user state, ``o`` the CRM's (SASRec's sequence output, from the teacher
store); ``g_l`` (D -> k) and ``g_c`` (d -> k) are LLM-SRec's two user projections, each two
linear layers with a GELU between, k = ``llmsrec_projection_size``. L_Distill is LLM-SRec's MSE
between the projections, taken on the unit sphere (``losses.user_alignment_loss`` says why);
L_Uniform is the uniformity loss of Wang & Isola (t = 2) over the pairs of a micro batch, which
keeps the projected users from collapsing onto one point. w = ``llmsrec_weight`` and
u = ``llmsrec_uniformity_weight`` default to 1: LLM-SRec sums its recommendation loss, L_Distill
and L_Uniform unweighted. Both projections train with this model; the CRM is the frozen teacher.
They only shape training: checkpoints keep them, ``save_artifacts`` does not.

Only the last position feeds ``W_out``: no LM-head logits over the vocabulary are computed.
Sequences are left-padded so that position -1 always holds the response header's last token.
The RecBole checkpoint of this model holds the trainable parts and ``E``, not the frozen
backbone; ``save_artifacts`` writes the LoRA adapter (peft safetensors) and the projections.
"""

import json
from pathlib import Path

import torch
from peft import LoraConfig, TaskType, get_peft_model, set_peft_model_state_dict
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import DynamicCache

from recbole_llmd4rec.atomic import PREVIOUS_FOLDER_SUFFIX, dataset_identity, replacing_folder
from recbole_llmd4rec.compat import cache_keyword
from recbole_llmd4rec.config import require_int
from recbole_llmd4rec.errors import ConfigError, LLMD4RecError
from recbole_llmd4rec.distributed import barrier, several, writes_files
from recbole_llmd4rec.llm import (
    LLM_INITS, TINY_LLM_NAME, build_tiny_llm, load_backbone, resolve_attention, resolve_dtype,
)
from recbole_llmd4rec.losses import (
    FeatureTargets, TeacherTargets, distillation_objective, distillation_terms, item_teacher_targets,
    user_distillation_objective,
)
from recbole_llmd4rec.model.length_groups import forward_in_length_groups
from recbole_llmd4rec.model.sasrecd import CRM_EMBEDDING_KEY, check_distillation_settings, read_crm_checkpoint

ADAPTER_DIR = "adapter"
PROJECTIONS_FILE = "projections.safetensors"
META_FILE = "e4srec.json"


class E4SRec(SequentialRecommender):
    """E4SRec on a frozen decoder LM with LoRA; optionally a student of a CRM (Eq. 5)."""

    input_type = InputType.POINTWISE

    @staticmethod
    def check_settings(config):
        """E4SRec's own keys, refused before the data set and the backbone load."""
        check_distillation_settings(config, "E4SRec")
        for key, minimum in (("length_groups", 0), ("lora_r", 1)):
            require_int(config, key, minimum)
        if config["llm_num_layers"] is not None:
            require_int(config, "llm_num_layers", 1, " or empty for all of the backbone's layers")
        if config["llm_init"] not in LLM_INITS:
            raise ConfigError(f"llm_init must be one of {', '.join(LLM_INITS)}; got {config['llm_init']!r}")
        require_int(config, "llmsrec_projection_size", 1)
        for key in ("llmsrec_weight", "llmsrec_uniformity_weight"):
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{key} must be a number >= 0, got {value!r}")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_settings(config)
        self.dataset_identity = dataset_identity(dataset)  # saved with every checkpoint (other_parameter)
        self.other_parameter_name = ["dataset_identity"]
        self.embedding_size = config["embedding_size"]
        self.distill_gamma = config["distill_gamma"]
        self.distill_temperature = config["distill_temperature"]
        self.sample_weight = config["sample_weight"]
        self.length_groups = require_int(config, "length_groups", 0, " (0: no grouping)")
        self.share_prompt = config["share_prompt"]
        self.llmsrec_weight = config["llmsrec_weight"]
        self.llmsrec_uniformity_weight = config["llmsrec_uniformity_weight"]
        self.llmsrec_projection_size = config["llmsrec_projection_size"]
        self.user_projection = self.crm_user_projection = None  # LLM-SRec's g_l and g_c (add_distiller_parts)
        self.llm_dtype = resolve_dtype(config["llm_dtype"], config["device"])

        if config["llm_path"] == TINY_LLM_NAME and several(config):
            # the embedded default is written to its cache folder once, by rank 0; the others then read it
            if writes_files(config):
                build_tiny_llm(config["tiny_llm"], config["llm_cache_dir"], config["seed"])
            barrier(config)
        backbone, tokenizer = load_backbone(
            config["llm_path"], self.llm_dtype, config["llm_cache_dir"], config["tiny_llm"], config["seed"],
            config["llm_gguf_file"], resolve_attention(config["llm_attention"], config["device"]),
            config["llm_num_layers"], config["llm_init"],
        )
        backbone.requires_grad_(False)
        self.cache_keyword = cache_keyword(backbone)
        lora = LoraConfig(
            task_type=TaskType.FEATURE_EXTRACTION,
            r=config["lora_r"],
            lora_alpha=config["lora_alpha"],
            lora_dropout=config["lora_dropout"],
            target_modules=list(config["lora_target_modules"]),
        )
        try:
            self.backbone = get_peft_model(backbone, lora)
        except ValueError as exc:
            raise ConfigError(f"lora_target_modules do not fit this backbone: {str(exc).splitlines()[0]}") from None
        llm_width = backbone.config.hidden_size

        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0)
        self.item_embedding.weight.requires_grad_(False)
        self.input_projection = nn.Linear(self.embedding_size, llm_width)  # W_in
        self.output_projection = nn.Linear(llm_width, self.n_items)  # W_out
        self.loss_fct = nn.CrossEntropyLoss()

        def token_ids(text):
            return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)

        self.register_buffer("instruction_ids", token_ids(config["instruction"]), persistent=False)
        self.register_buffer("response_ids", token_ids(config["response_header"]), persistent=False)
        self._frozen_keys = {f"backbone.{name}" for name, p in self.backbone.named_parameters() if not p.requires_grad}

        # E from a trained CRM (Sec. 4.1); without one they stay random, which matters only when
        # E4SRec trains alone: LLMD4Rec copies its CRM's E in before round 1.
        self.has_crm_embeddings = bool(config["crm_checkpoint"])
        if self.has_crm_embeddings:
            self.set_item_embeddings(crm_item_embeddings(config["crm_checkpoint"], dataset, self.embedding_size))

    def add_distiller_parts(self, distiller, teacher_width):
        """LLM-SRec: its projections of this model's user state (g_l, D -> k) and of the CRM's
        (g_c, ``teacher_width`` -> k) into one space; any other distiller adds nothing."""
        if distiller == "llmsrec":
            self.user_projection = user_projection(self.width, self.llmsrec_projection_size)
            self.crm_user_projection = user_projection(teacher_width, self.llmsrec_projection_size)

    # Item embeddings (Sec. 4.1; the trainer replaces them each round: "embedding update").
    def set_item_embeddings(self, weight):
        weight = weight.detach()
        if tuple(weight.shape) != tuple(self.item_embedding.weight.shape):
            raise LLMD4RecError(
                f"item embeddings of shape {tuple(weight.shape)} do not fit E4SRec's "
                f"{tuple(self.item_embedding.weight.shape)} (items incl. padding x embedding_size)"
            )
        with torch.no_grad():
            self.item_embedding.weight.copy_(weight.to(self.item_embedding.weight))

    def _left_padded(self, parts, item_seq, item_seq_len):
        """``parts`` = (before, history, after) embeddings, the history right-padded to the
        batch width; returns ``[pad..., before, history, after]`` (B, T, D) and its 0/1 mask."""
        before, history, after = parts
        max_len = item_seq.size(1)
        content = torch.cat([before, history, after], dim=1)  # history right-padded inside
        n_before = before.size(1)
        lengths = item_seq_len.view(-1, 1)
        position = torch.arange(content.size(1), device=item_seq.device).view(1, -1)
        offset = position - (max_len - lengths)  # index into the unpadded content
        is_token = offset >= 0
        source = torch.where(offset < n_before + lengths, offset, offset - lengths + max_len).clamp(min=0)
        embeddings = content.gather(1, source.unsqueeze(-1).expand(-1, -1, content.size(-1)))
        embeddings = embeddings * is_token.unsqueeze(-1).to(embeddings.dtype)
        return embeddings, is_token.long()

    def forward(self, item_seq, item_seq_len):
        """User state: the last position's final hidden state, (B, D) in float32."""
        if not self.share_prompt:
            return forward_in_length_groups(self._user_state, item_seq, item_seq_len, self.length_groups)
        prompt_key_values = self._instruction_key_values()
        return forward_in_length_groups(
            lambda seq, seq_len: self._user_state_after_prompt(prompt_key_values, seq, seq_len),
            item_seq, item_seq_len, self.length_groups,
        )

    def _history_and_response(self, item_seq):
        token_embeddings = self.backbone.get_input_embeddings()
        response = token_embeddings(self.response_ids).unsqueeze(0).expand(item_seq.size(0), -1, -1)
        history = self.input_projection(self.item_embedding(item_seq)).to(response.dtype)
        return history, response

    def _user_state(self, item_seq, item_seq_len):
        """Reference path: every sequence carries its own copy of the instruction."""
        history, response = self._history_and_response(item_seq)
        instruction = self.backbone.get_input_embeddings()(self.instruction_ids)
        instruction = instruction.unsqueeze(0).expand(item_seq.size(0), -1, -1)
        embeddings, attention_mask = self._left_padded((instruction, history, response), item_seq, item_seq_len)
        position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        output = self.backbone(inputs_embeds=embeddings, attention_mask=attention_mask, position_ids=position_ids,
                               use_cache=False)
        return output.last_hidden_state[:, -1].float()

    # Shared instruction: the same function as _user_state. The instruction is the same tokens
    # at the same positions (0..P-1) in every sequence and, under causal attention, sees only
    # itself, so its keys and values are computed once per batch and shared by all sequences,
    # which then hold [pad..., history, response] at positions P, P+1, ...
    def _instruction_key_values(self):
        """Per layer, the instruction's (keys, values), batch size 1."""
        instruction = self.backbone.get_input_embeddings()(self.instruction_ids).unsqueeze(0)
        cache = DynamicCache(config=self.backbone.config)
        positions = torch.arange(instruction.size(1), device=instruction.device).unsqueeze(0)
        self.backbone(inputs_embeds=instruction, position_ids=positions, use_cache=True, **{self.cache_keyword: cache})
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _user_state_after_prompt(self, prompt_key_values, item_seq, item_seq_len):
        batch_size, n_prompt = item_seq.size(0), prompt_key_values[0][0].size(-2)
        history, response = self._history_and_response(item_seq)
        empty = response[:, :0]
        embeddings, sequence_mask = self._left_padded((empty, history, response), item_seq, item_seq_len)
        attention_mask = torch.cat([sequence_mask.new_ones(batch_size, n_prompt), sequence_mask], dim=1)
        position_ids = n_prompt + (sequence_mask.cumsum(dim=1) - 1).clamp(min=0)
        shared = [(keys.expand(batch_size, -1, -1, -1), values.expand(batch_size, -1, -1, -1))
                  for keys, values in prompt_key_values]
        cache = DynamicCache(shared, config=self.backbone.config)
        output = self.backbone(inputs_embeds=embeddings, attention_mask=attention_mask, position_ids=position_ids,
                               use_cache=True, **{self.cache_keyword: cache})
        return output.last_hidden_state[:, -1].float()

    def item_logits(self, interaction):
        """``y_l``: scores of every item, (B, n_items), column 0 the padding item."""
        user_state = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return self.output_projection(user_state)

    def calculate_loss(self, interaction, teacher_logits=None, teacher=None):
        """Eq. 2 (CE over all items); with a CRM teacher Eq. 5. The teacher comes as
        ``teacher_logits`` (B, n_items) or, from a teacher store, as :class:`TeacherTargets`
        (Eq. 5) or :class:`FeatureTargets` (the CRM's user states: LLM-SRec)."""
        user_state = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        logits = self.output_projection(user_state)
        target = interaction[self.POS_ITEM_ID]
        rec_loss = self.loss_fct(logits, target)
        if teacher_logits is None and teacher is None:
            return rec_loss
        if isinstance(teacher, FeatureTargets):
            if self.user_projection is None:
                raise LLMD4RecError("LLM-SRec's teacher needs add_distiller_parts('llmsrec', width) first")
            return user_distillation_objective(
                rec_loss, self.user_projection(user_state), self.crm_user_projection(teacher.user_state),
                self.llmsrec_weight, self.llmsrec_uniformity_weight,
            )
        if teacher is None:
            teacher = item_teacher_targets(teacher_logits, target, self.distill_temperature)
        if not isinstance(teacher, TeacherTargets):
            raise LLMD4RecError(f"E4SRec learns from a CRM through LLMD4Rec's KL or LLM-SRec's user states, "
                                f"not {type(teacher).__name__}")
        kl, weight = distillation_terms(logits, teacher, target, self.distill_temperature, self.sample_weight)
        return distillation_objective(rec_loss, kl, weight, self.distill_gamma)

    def item_representations(self):
        """The LLM side's item vectors, the rows of ``W_out`` (n_items, D): what DLLM2Rec's
        embedding distillation takes as the teacher's item embeddings."""
        return self.output_projection.weight.detach()

    @property
    def width(self):
        """D, the width of the user state (the LM's hidden size)."""
        return self.output_projection.in_features

    def predict(self, interaction):
        return self.item_logits(interaction).gather(1, interaction[self.ITEM_ID].view(-1, 1)).squeeze(1)

    def full_sort_predict(self, interaction):
        return self.item_logits(interaction)

    # RecBole checkpoints: everything but the frozen backbone (a 7B backbone is ~15 GB).
    def state_dict(self, *args, **kwargs):
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        for key in [k for k in state if k[len(prefix):] in self._frozen_keys]:
            del state[key]
        return state

    def load_state_dict(self, state_dict, strict=True, assign=False):
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [key for key in result.missing_keys if key not in self._frozen_keys]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(
                f"E4SRec state dict does not fit: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
            )
        return result

    # Deployable artefacts: peft adapter + projections + item embeddings.
    def save_artifacts(self, directory):
        """Write ``adapter/`` (peft safetensors), the projections and E; atomically."""
        directory = Path(directory)
        with replacing_folder(directory) as temporary:
            self.backbone.save_pretrained(temporary / ADAPTER_DIR)
            tensors = {
                name: tensor.detach().cpu().contiguous()
                for name, tensor in super().state_dict().items()
                if name.split(".")[0] in ("input_projection", "output_projection", "item_embedding")
            }
            save_file(tensors, temporary / PROJECTIONS_FILE)
            meta = {"n_items": self.n_items, "embedding_size": self.embedding_size}
            (temporary / META_FILE).write_text(json.dumps(meta, indent=2))
        return directory

    def load_artifacts(self, directory):
        """Restore what :meth:`save_artifacts` wrote; refuses artefacts of another data set."""
        directory = Path(directory)
        meta_file = directory / META_FILE
        previous = directory.with_name(directory.name + PREVIOUS_FOLDER_SUFFIX)
        if not directory.exists() and previous.is_dir():
            raise LLMD4RecError(f"{directory} is missing: a run stopped while replacing it (the earlier version is "
                                f"in {previous}); rerun that run to write it again")
        if not meta_file.is_file():
            raise LLMD4RecError(f"{directory} holds no E4SRec artefacts ({META_FILE} missing)")
        meta = json.loads(meta_file.read_text())
        expected = {"n_items": self.n_items, "embedding_size": self.embedding_size}
        if meta != expected:
            raise LLMD4RecError(f"E4SRec artefacts in {directory} were saved for {meta}, this model has {expected}")
        adapter = load_file(directory / ADAPTER_DIR / "adapter_model.safetensors", device="cpu")
        result = set_peft_model_state_dict(self.backbone, adapter)
        if getattr(result, "unexpected_keys", None):
            raise LLMD4RecError(f"the LoRA adapter in {directory} does not fit this backbone")
        super().load_state_dict(load_file(directory / PROJECTIONS_FILE, device="cpu"), strict=False)


def user_projection(width, size):
    """One of LLM-SRec's user projections: ``width`` -> ``size`` -> ``size``, a GELU between."""
    return nn.Sequential(nn.Linear(width, size), nn.GELU(), nn.Linear(size, size))


def crm_item_embeddings(checkpoint_path, dataset, embedding_size):
    """``E`` from a SASRec/SASRecD RecBole checkpoint, checked against the data set and size."""
    weight = read_crm_checkpoint(checkpoint_path, dataset)[CRM_EMBEDDING_KEY]
    n_items = dataset.item_num
    if weight.shape[0] != n_items:
        raise LLMD4RecError(
            f"{checkpoint_path} has {weight.shape[0] - 1} items, this data set has {n_items - 1}: "
            f"it was trained on another data set"
        )
    if weight.shape[1] != embedding_size:
        raise LLMD4RecError(
            f"{checkpoint_path} has item embeddings of size {weight.shape[1]}, E4SRec's embedding_size is "
            f"{embedding_size}: set embedding_size to match the CRM"
        )
    return weight
