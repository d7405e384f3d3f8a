"""Token and positional embeddings of a pre-trained MIDI transformer, per graph token.

A graph token is a ``(field, value)`` pair with flat id ``offset[field] + value``. From a musictl
MidiBert the table is exact (each field row projected into the hidden space); from another
Hugging Face model its input embeddings are mapped through MidiTok-style token names
(``Pitch_60``, ``Velocity_63``, ``Program_0``, ``Position_4``, ``Bar_0``). A model adapted to a style
(``musictl adapt``: an ``adapted`` artifact, LoRA merged into its base) gives its own encoder's, whose
hidden states are left-context ones (causal attention).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from musictl import constants as C
from musictl.errors import ArtifactError
from musictl.midi.tokens import TokenCorpus
from musictl.midi.vocab import TokenizerConfig
from musictl.progress import Progress

FILE = "embeddings.safetensors"

# MidiTok token-name prefixes -> musictl field (values are mapped by _map_value).
MIDITOK_PREFIXES = {"Bar": C.BAR, "Position": C.POSITION, "Program": C.INSTRUMENT, "Pitch": C.PITCH, "Velocity": C.VELOCITY}


def is_midibert_dir(path: Path) -> bool:
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "midibert"
    except (ValueError, AttributeError):
        raise ArtifactError(f"{config}: not a readable model config; remake the model or pass another --model") from None


def midibert_encoder(model_dir: Path):
    """The encoder of a MidiBert directory in eval mode: an adapted model's (its LoRA merged), else any MidiBert's."""
    from musictl import artifacts

    manifest = Path(model_dir) / artifacts.MANIFEST
    if manifest.is_file() and artifacts.read_manifest(Path(model_dir)).kind == artifacts.ADAPTED:
        from musictl.bert.adapt import load_adapted

        return load_adapted(model_dir).bert.eval()
    from musictl.bert.model import load_encoder

    return load_encoder(model_dir)


def static_midibert(model_dir: Path) -> tuple[torch.Tensor, torch.Tensor, TokenizerConfig]:
    """(token table (n_graph_tokens, H), position table (P, H), vocabulary) of a MidiBert."""
    encoder = midibert_encoder(model_dir)
    return encoder.token_embeddings(), encoder.position_embeddings_table(), encoder.config.tokenizer_config


@torch.no_grad()
def contextual_midibert(model_dir: Path, corpus: TokenCorpus, style: str | None = None, max_len: int = 512, batch_size: int = 8,
                        on_progress: Progress | None = None):
    """Mean last hidden state of every graph token over a style's pieces, or over every training piece of the
    corpus when ``style`` is None (zeros where a token never occurs: ``counts`` says which).

    Returns (table, counts, position table, vocabulary). ``on_progress`` gets windows done of all.
    """
    from musictl.bert.data import cut_windows, pad_batch

    encoder = midibert_encoder(model_dir)
    encoder.check_tokens(corpus.config, str(corpus.path))
    config = corpus.config
    max_len = min(max_len, encoder.config.max_position_embeddings)
    pieces = corpus.require_style(style) if style else (corpus.select(split="train") or corpus.pieces)
    windows, _ = cut_windows(corpus, pieces, max_len)
    table = torch.zeros(config.n_graph_tokens, encoder.config.hidden_size)
    counts = torch.zeros(config.n_graph_tokens)
    offsets = torch.from_numpy(config.field_offsets)
    for i in range(0, len(windows), batch_size):
        ids, mask = pad_batch(windows[i : i + batch_size])
        hidden = encoder(ids, mask).last_hidden_state[mask.bool()]  # (notes, H)
        flat = (ids[mask.bool()] - C.N_SPECIAL + offsets).reshape(-1)  # 8 graph tokens per note
        table.index_add_(0, flat, hidden.repeat_interleave(C.N_FIELDS, dim=0))
        counts.index_add_(0, flat, torch.ones(len(flat)))
        if on_progress is not None:
            on_progress(min(i + batch_size, len(windows)), len(windows))
    table = table / counts.clamp_min(1).unsqueeze(1)
    return table, counts, encoder.position_embeddings_table(), config


def static_hf(model_dir: str, config: TokenizerConfig) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Map a Hugging Face model's input embeddings onto graph tokens by MidiTok-style names.

    Graph tokens without a name in the model's vocabulary get their field's mean embedding and are
    flagged in the returned ``mapped`` mask. Fails, naming what is needed, when nothing maps.
    """
    from transformers import AutoModel, AutoTokenizer

    from musictl.hf import from_pretrained

    model = from_pretrained(AutoModel, model_dir, "model")
    vocab = from_pretrained(AutoTokenizer, model_dir, "tokenizer").get_vocab()
    weight = model.get_input_embeddings().weight.detach()
    table = torch.zeros(config.n_graph_tokens, weight.shape[1])
    mapped = np.zeros(config.n_graph_tokens, dtype=bool)
    for name, index in vocab.items():
        match = re.fullmatch(r"([A-Za-z]+)_(\d+)", name)
        if not match or match.group(1) not in MIDITOK_PREFIXES:
            continue
        field = MIDITOK_PREFIXES[match.group(1)]
        value = _map_value(field, int(match.group(2)), config)
        if value is None:
            continue
        flat = int(config.field_offsets[field]) + value
        table[flat] += weight[index]
        mapped[flat] = True
    if not mapped.any():
        raise ArtifactError(
            f"the vocabulary of {model_dir} has no MidiTok-style token names, so its embeddings cannot be mapped to "
            "musictl tokens; embed needs names such as Pitch_60, Velocity_63, Program_0, Position_4, Bar_0 "
            "(or use a MidiBert model from musictl pretrain-bert)"
        )
    for field, size in enumerate(config.field_sizes):
        block = slice(int(config.field_offsets[field]), int(config.field_offsets[field]) + size)
        if mapped[block].any():
            table[block][~torch.from_numpy(mapped[block])] = table[block][torch.from_numpy(mapped[block])].mean(0)
    positions = _position_table(model)
    return table, positions, mapped


def _map_value(field: int, value: int, config: TokenizerConfig) -> int | None:
    if field == C.VELOCITY:
        return min(value, 127) * config.velocity_bins // 128
    size = config.field_sizes[field]
    return value if 0 <= value < size else None


def _position_table(model) -> torch.Tensor:
    for name, module in model.named_modules():
        if name.endswith(("position_embeddings", "wpe")) and hasattr(module, "weight"):
            return module.weight.detach().clone()
    return torch.zeros(1, model.get_input_embeddings().weight.shape[1])


def load_embeddings(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(Path(path) / FILE))
    except Exception as exc:  # safetensors raises its own error types for truncated files
        raise ArtifactError(f"{Path(path) / FILE}: unreadable embeddings ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                            "remake them: musictl embed --overwrite") from None
