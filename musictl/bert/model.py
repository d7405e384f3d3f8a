"""MidiBert: BERT over Octuple notes, as Hugging Face ``PreTrainedModel`` classes.

Each note is 8 field ids; each field has its own embedding table, the 8 embeddings are
concatenated and projected to the hidden size, and the result goes into
``transformers.BertModel(inputs_embeds=...)`` with absolute positions (transformers v5 has no
relative BERT positions). The tokenizer parameters travel inside the config, so a model refuses
tokens made with other parameters.

Attention is bidirectional (BERT's) unless the config says ``causal`` (or a forward pass asks for it): then
each note attends only to itself and the notes before it, the left-context mode of the next-note model
(:mod:`musictl.bert.nextnote`). Configs written before the option existed read as bidirectional.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import BertConfig, BertModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from musictl import constants as C
from musictl.errors import ArtifactError
from musictl.midi.vocab import TokenizerConfig

SIZES = {
    # name: hidden, layers, heads, intermediate, per-field embedding, positions
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, field_embed_dim=32,
                 max_position_embeddings=512),
    "mini": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512, field_embed_dim=64,
                 max_position_embeddings=512),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024, field_embed_dim=64,
                  max_position_embeddings=1024),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, field_embed_dim=256,
                 max_position_embeddings=1024),
}


class MidiBertConfig(PretrainedConfig):
    model_type = "midibert"

    def __init__(
        self,
        tokenizer: dict | None = None,
        field_embed_dim: int = 256,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        max_position_embeddings: int = 1024,
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        initializer_range: float = 0.02,
        masker_hidden: int = 256,
        causal: bool = False,
        **kwargs,
    ):
        self.tokenizer = tokenizer or TokenizerConfig().describe()
        self.field_embed_dim = field_embed_dim
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        self.masker_hidden = masker_hidden
        self.causal = causal  # each note attends to the notes before it only (the next-note model's encoder)
        super().__init__(**kwargs)

    @classmethod
    def of_size(cls, size: str, tokenizer: TokenizerConfig, **overrides) -> MidiBertConfig:
        """A config of a named size (tiny, small, base) with any field overridden."""
        if size not in SIZES:
            raise ValueError(f"unknown size '{size}'; choose one of {', '.join(SIZES)}")
        values = {**SIZES[size], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(tokenizer=tokenizer.describe(), **values)

    @property
    def tokenizer_config(self) -> TokenizerConfig:
        return TokenizerConfig.from_dict(self.tokenizer)

    @property
    def vocab_sizes(self) -> list[int]:
        return list(self.tokenizer_config.vocab_sizes)

    def bert_config(self) -> BertConfig:
        return BertConfig(
            vocab_size=C.N_SPECIAL,  # the word table is never used: inputs_embeds replaces it
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            initializer_range=self.initializer_range,
            type_vocab_size=1,
            pad_token_id=C.PAD_ID,
        )


class MidiBertPreTrainedModel(PreTrainedModel):
    config_class = MidiBertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True

    def check_tokens(self, tokenizer: TokenizerConfig, source: str = "the tokens") -> None:
        """Refuse tokens made with other tokenizer parameters than the model's."""
        mine = self.config.tokenizer_config
        if mine.vocab_id != tokenizer.vocab_id:
            raise ArtifactError(
                f"{source} use vocabulary {tokenizer.vocab_id}, but the model was trained on {mine.vocab_id}; "
                "tokenize with the model's parameters (see its config.json 'tokenizer') or train a new model"
            )


class MidiBertModel(MidiBertPreTrainedModel):
    """The encoder: notes (B, L, 8) -> hidden states (B, L, H)."""

    def __init__(self, config: MidiBertConfig):
        super().__init__(config)
        dim = config.field_embed_dim
        self.field_embeddings = nn.ModuleList(nn.Embedding(v, dim, padding_idx=C.PAD_ID) for v in config.vocab_sizes)
        self.in_proj = nn.Linear(dim * C.N_FIELDS, config.hidden_size)
        self.encoder = BertModel(config.bert_config(), add_pooling_layer=False)
        self.post_init()

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.in_proj(torch.cat([emb(input_ids[..., f]) for f, emb in enumerate(self.field_embeddings)], dim=-1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, causal: bool | None = None,
                **kwargs) -> BaseModelOutput:
        """Hidden states; ``causal`` (default: the config's) lets each note see only itself and the notes before it."""
        if attention_mask is None:
            attention_mask = (input_ids[..., 0] != C.PAD_ID).long()
        embeds = self.embed(input_ids)
        if self.config.causal if causal is None else causal:
            attention_mask = causal_mask(attention_mask, embeds.dtype)
        out = self.encoder(inputs_embeds=embeds, attention_mask=attention_mask)
        return BaseModelOutput(last_hidden_state=out.last_hidden_state)

    @torch.no_grad()
    def token_embeddings(self) -> torch.Tensor:
        """Hidden-space embedding of every graph token (field, value), in flat-id order
        (``TokenizerConfig.field_offsets[field] + value``; specials excluded)."""
        dim = self.config.field_embed_dim
        blocks = []
        for f, emb in enumerate(self.field_embeddings):
            weight = self.in_proj.weight[:, f * dim : (f + 1) * dim]  # (H, dim)
            blocks.append(emb.weight[C.N_SPECIAL :] @ weight.T)
        return torch.cat(blocks)

    @torch.no_grad()
    def position_embeddings_table(self) -> torch.Tensor:
        return self.encoder.embeddings.position_embeddings.weight.detach().clone()


def causal_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive (B, 1, L, L) mask under which note t attends to the real notes 0..t only (0: attend, the
    dtype's minimum: not), from the (B, L) padding mask; ``transformers`` takes a 4D mask as it is, under any
    attention implementation."""
    length = attention_mask.shape[-1]
    earlier = torch.ones(length, length, dtype=torch.bool, device=attention_mask.device).tril()
    allowed = earlier[None] & attention_mask.bool()[:, None, :]
    return torch.zeros(allowed.shape, dtype=dtype, device=attention_mask.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)[:, None]


def _mlm_head(hidden: int, vocab: int) -> nn.Module:
    return nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, vocab))


class MidiBertForPreTraining(MidiBertPreTrainedModel):
    """Encoder + one MLM head per field + the adversarial masker head (hidden -> 256 -> 1)."""

    def __init__(self, config: MidiBertConfig):
        super().__init__(config)
        self.bert = MidiBertModel(config)
        self.mlm_heads = nn.ModuleList(_mlm_head(config.hidden_size, v) for v in config.vocab_sizes)
        self.masker = nn.Sequential(nn.Linear(config.hidden_size, config.masker_hidden), nn.GELU(), nn.Linear(config.masker_hidden, 1))
        self.post_init()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, selected: torch.Tensor | None = None, **kwargs
    ) -> list[torch.Tensor]:
        """Per-field logits, each (B, L, vocab_f); with ``selected`` (B, L) only for those notes,
        each (n_selected, vocab_f), which skips the heads' work on the 85% that are not scored."""
        hidden = self.bert(input_ids, attention_mask).last_hidden_state
        if selected is not None:
            hidden = hidden[selected]
        return [head(hidden) for head in self.mlm_heads]

    def masker_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """How hard each note of the clean sequence is to recover (logits, (B, L)).

        The encoder runs without gradients here: the masker head learns from its features, and
        the encoder is trained by the recovery loss only (one backward pass per step, not two).
        """
        with torch.no_grad():
            hidden = self.bert(input_ids, attention_mask).last_hidden_state
        return self.masker(hidden).squeeze(-1)


class AttentionPooling(nn.Module):
    """A learned weighted mean of the notes (padding excluded)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(hidden).squeeze(-1).masked_fill(~mask.bool(), torch.finfo(hidden.dtype).min)
        return (torch.softmax(scores, dim=-1).unsqueeze(-1) * hidden).sum(dim=1)


class MidiBertForTokenClassification(MidiBertPreTrainedModel):
    """A label per note (melody extraction, velocity)."""

    def __init__(self, config: MidiBertConfig):
        super().__init__(config)
        self.bert = MidiBertModel(config)
        self.classifier = nn.Sequential(nn.Dropout(config.hidden_dropout_prob), nn.Linear(config.hidden_size, config.num_labels))
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        return self.classifier(self.bert(input_ids, attention_mask).last_hidden_state)


class MidiBertForSequenceClassification(MidiBertPreTrainedModel):
    """A label per piece (composer, emotion, style), with attention pooling."""

    def __init__(self, config: MidiBertConfig):
        super().__init__(config)
        self.bert = MidiBertModel(config)
        self.pool = AttentionPooling(config.hidden_size)
        self.classifier = nn.Sequential(nn.Dropout(config.hidden_dropout_prob), nn.Linear(config.hidden_size, config.num_labels))
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = (input_ids[..., 0] != C.PAD_ID).long()
        hidden = self.bert(input_ids, attention_mask).last_hidden_state
        return self.classifier(self.pool(hidden, attention_mask))


ARCHITECTURES = {
    cls.__name__: cls
    for cls in (MidiBertModel, MidiBertForPreTraining, MidiBertForTokenClassification, MidiBertForSequenceClassification)
}


def load_midibert(path: str | Path, producer: str = "musictl pretrain-bert") -> MidiBertPreTrainedModel:
    """Load whichever MidiBert class a directory holds (its config's ``architectures``);
    ``producer`` is the command named when the directory holds no model."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ArtifactError(f"no MidiBert model in {path} (config.json missing); run: {producer}")
    data = json.loads(config_file.read_text())
    if data.get("model_type") != MidiBertConfig.model_type:
        raise ArtifactError(f"{path} holds a '{data.get('model_type')}' model, not a MidiBert model")
    name = (data.get("architectures") or ["MidiBertModel"])[0]
    return ARCHITECTURES.get(name, MidiBertModel).from_pretrained(path)


def load_encoder(path: str | Path) -> MidiBertModel:
    """The encoder (``MidiBertModel``) of any MidiBert directory, in eval mode."""
    model = load_midibert(path)
    encoder = model if isinstance(model, MidiBertModel) else model.bert
    return encoder.eval()
