"""Settings of the cross-style chain: embed, adjacency, train-gcn, generate-rwr and the demo.

Torch-free, so the command line can read every default, help text and range from here
(``musictl.commands._common.option``). Each field is the one place its default lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from musictl.constants import FIELDS
from musictl.errors import UsageError
from musictl.settings import Precision, RunSettings, Settings, setting

# GCN link prediction: an upper bound, early stopping on validation ROC-AUC ends runs sooner.
GCN_MAX_EPOCHS = 1000
# Shares of the style graph's edges held out for validation (model selection) and test (reported once).
VAL_SHARE = 0.1
TEST_SHARE = 0.1

EmbedMode = Literal["static", "contextual"]
Normalize = Literal["none", "sym", "row"]
Export = Literal["graphml"]
Conv = Literal["gcn", "sage"]
Decoder = Literal["mlp", "dot"]
Features = Literal["token", "token-pos", "position-profile"]
GraphKind = Literal["cooccurrence", "similarity"]
EdgeWeight = Literal["log", "linear"]
NotesBy = Literal["walk", "transformer"]
Edges = Literal["cooccurrence", "transition"]
GraphPieces = Literal["train", "all"]
Negatives = Literal["uniform", "same-field"]
LinkTarget = Literal["style", "own"]
KeyMode = Literal["common", "as-is"]

# The fields that carry the music: the default nodes of a style graph. Bar numbers, metre and tempo
# only book the place (a bar-number token meets every note of its bar), so they are opt-in.
MUSICAL_FIELDS = ("position", "instrument", "pitch", "duration", "velocity")

# The study's three models (Hanxi-002/Token-Transfer-Learning, code/gcn.py): node features and graph.
MODELS: dict[int, tuple[str, str]] = {
    1: ("token", "similarity"),  # token embeddings; graph of their cosine similarity
    2: ("position-profile", "similarity"),  # token x positional embeddings; graph of their similarity
    3: ("token", "cooccurrence"),  # token embeddings; the style graph of musictl adjacency
}
SEED_HELP = "Random seed: the same seed gives the same result."


@dataclass
class EmbedSettings(Settings):
    """``musictl embed``: which table to take from the model."""

    mode: EmbedMode = setting(
        "contextual", "contextual: each token's mean last hidden state over the pieces it occurs in (a MidiBert); static: "
                      "the input embedding tables (any model).")
    style: Optional[str] = setting(None, "contextual: average over this style's pieces only [default: every training piece "
                                         "of the tokens].")


def parse_fields(text: str) -> tuple[str, ...]:
    """Field names of a comma-separated ``--nodes`` value (``all``: every field of ``constants.FIELDS``), in Octuple
    order. The graph of earlier versions (every field a node, co-occurrence edges within --window, every piece) is
    ``--nodes all --edges cooccurrence --window 2 --pieces all --key as-is``."""
    names = [n.strip().replace("-", "_") for n in str(text).split(",") if n.strip()]
    if names == ["all"]:
        return FIELDS
    unknown = [n for n in names if n not in FIELDS]
    if unknown or not names:
        raise UsageError(f"--nodes {text!r}: name fields separated by commas, from {', '.join(FIELDS)} (or all)")
    return tuple(f for f in FIELDS if f in names)


@dataclass
class GraphSettings(Settings):
    """``musictl adjacency``: which tokens are nodes of a style graph and how its edges are counted."""

    nodes: str = setting(",".join(MUSICAL_FIELDS), "Fields whose tokens are nodes, comma-separated (all: every "
                                                   "field; bar, time_signature and tempo only book the place).")
    edges: Edges = setting("transition", "transition: directed counts from each note to the next note of its part, "
                                         "per field pair; cooccurrence: a note's tokens with each other and with the "
                                         "next --window notes (symmetric).")
    window: int = setting(2, "With --edges cooccurrence: link each note to the next N notes (weight 1/distance).",
                          min=0, max=64)
    pieces: GraphPieces = setting("train", "Count the style's training pieces (held-out ones stay unseen, for fidelity), "
                                           "or all of them (as earlier versions did).")
    key: KeyMode = setting("common", "common: count each piece transposed to C major / A minor (its key estimated "
                                     "from its pitch-class durations), so the walk keeps one key and generate-rwr "
                                     "places each piece in a key of the style's; as-is: count pitches as they are.")
    normalize: Normalize = setting("none", "none: raw counts; sym: D^-1/2 A D^-1/2; row: transition matrix.")
    export: Optional[Export] = setting(None, "Also write the graph as graphml (networkx).")

    def validate(self) -> None:
        self.nodes = ",".join(parse_fields(self.nodes))

    @property
    def fields(self) -> tuple[int, ...]:
        """Column indices of the node fields."""
        return tuple(FIELDS.index(name) for name in parse_fields(self.nodes))


@dataclass
class GcnSettings(RunSettings):
    """``musictl train-gcn``: the model, its training and the edge split.

    A :class:`musictl.settings.RunSettings` (``--report-to``, ``--device``): the GCN trains through
    :class:`musictl.training.Run`, full-batch (the one graph is the one item of each epoch, so the batch
    fields stay at 1). Fields that shape the model, its inputs or the split are ``fixed`` on ``--resume``.
    """

    batch_size: int = setting(1, "Full-batch: the whole graph is the one item of each epoch.", min=1, max=1)
    grad_accum: int = setting(1, "Full-batch: one optimizer step per epoch.", min=1, max=1)
    mixed_precision: Optional[Precision] = setting("no", "no autocast: the GCN is small and full precision.")

    model: int = setting(3, "The study's model: 1 token embeddings + their similarity graph; 2 token x positional "
                            "embeddings + their similarity graph; 3 token embeddings + the style graph (musictl adjacency).",
                         min=1, max=3, fixed=True)
    features: Optional[Features] = setting(None, "Node features [default: the --model's]: token, token-pos (token + "
                                                 "positional embedding at the token's mean index), position-profile.", fixed=True)
    graph: Optional[GraphKind] = setting(None, "Graph [default: the --model's]: cooccurrence (the style graph) or "
                                               "similarity (cosine kNN of the node features).", fixed=True)
    conv: Conv = setting("gcn", "gcn (uses edge weights) or sage.", fixed=True)
    decoder: Decoder = setting("mlp", "mlp: MLP on the Hadamard product; dot: dot product.", fixed=True)
    edge_weight: EdgeWeight = setting("log", "GCN edge weights: log(1 + count) or the count, scaled to max 1.", fixed=True)
    degree_features: bool = setting(True, "Append log-degrees (of the message-passing graph only) to the node features.", fixed=True)
    layers: int = setting(2, "Graph convolution layers.", min=1, max=8, fixed=True)
    hidden: int = setting(128, "Hidden size.", min=2, fixed=True)
    out_dim: int = setting(64, "Node embedding size.", min=2, fixed=True)
    dropout: float = setting(0.2, "Dropout between layers.", min=0.0, max=0.9, fixed=True)
    lr: float = setting(0.01, "Adam learning rate.", min=1e-6, max=1.0)
    epochs: int = setting(GCN_MAX_EPOCHS, "Maximum epochs.", min=1)
    patience: int = setting(30, "Stop after N epochs without a better validation AUC.", min=1)
    similarity_k: int = setting(10, "Neighbours per node of a similarity graph.", min=1, fixed=True)
    negatives: Negatives = setting("same-field", "Training negatives (and the validation score that selects the "
                                                 "epoch): same-field (a non-edge of the same field pair as each "
                                                 "positive) or uniform (any non-edge).", fixed=True)
    predict: LinkTarget = setting("style", "Edges to predict: style (the style graph's, for every model) or own (the "
                                           "model's own graph: for models 1 and 2 the kNN graph of their features).", fixed=True)
    baselines: bool = setting(True, "Also score heuristics, random features and an MLP on the same test edges.")
    seed: int = setting(0, SEED_HELP, fixed=True)

    def validate(self) -> None:
        features, graph = MODELS[self.model]
        self.features = self.features or features
        self.graph = self.graph or graph


@dataclass
class WalkSettings(Settings):
    """``musictl generate-rwr``: one walk (one piece)."""

    bars: int = setting(16, "Bars to generate.", min=1, max=100_000, flag="--bars")
    mix: Optional[float] = setting(None, "Weight of the link predictor's probabilities in the walk's transition term "
                                         "(the style's counts weigh 1 - MIX) [default: chosen by likelihood on the "
                                         "style's validation pieces].", min=0.0, max=1.0)
    gcn: bool = setting(True, "Use the trained link predictor; --no-gcn: node embeddings z = 0 (an ablation).")
    temperature: float = setting(1.0, "Sampling temperature: probabilities raised to 1/T (lower: sharper).",
                                 min=1e-3, max=100.0)
    restart: float = setting(0.1, "Per-note probability of jumping back to a seed note.", min=0.0, max=1.0)
    max_notes_per_bar: int = setting(48, "At most this many notes in one bar.", min=1, max=1024)
    tempo: Optional[float] = setting(None, "Tempo in BPM for the whole piece [default: a piece of the style's].",
                                     min=16.0, max=256.0)
    program: Optional[int] = setting(None, "Play every pitched part with this GM program [default: the style's].",
                                     min=0, max=127)
    notes_by: NotesBy = setting("walk", "Who chooses each note's pitch and duration: walk (the style's counts and "
                                        "link predictor) or transformer (the style's adapted model, musictl adapt, "
                                        "given the notes written so far, among the graph's successors of the walk's "
                                        "context note).")
    transformer_weight: float = setting(1.0, "With --notes-by transformer: the transformer's share of each choice; "
                                             "the walk's transition term weighs 1 - W (1: the transformer alone).",
                                        min=0.0, max=1.0)
    top_p: float = setting(1.0, "With --notes-by transformer: sample each pitch and duration from the fewest "
                                "candidates holding this share of the probability (nucleus; 1: all).",
                           min=0.01, max=1.0)
    seed: int = setting(0, SEED_HELP)

    def validate(self) -> None:
        if self.notes_by != "transformer":
            given = [flag for flag, value, default in (("--transformer-weight", self.transformer_weight, 1.0),
                                                       ("--top-p", self.top_p, 1.0)) if value != default]
            if given:
                raise UsageError(f"{' and '.join(given)} only shape{'s' if len(given) == 1 else ''} the transformer's "
                                 "choices; add --notes-by transformer")


@dataclass
class GenerateSettings(Settings):
    """``musictl generate-rwr``: how many pieces, and what to write."""

    count: int = setting(1, "Pieces to generate (seeds SEED..SEED+K-1); more than one needs -o DIR.", min=1, max=100_000)
    evaluate: int = setting(0, "Instead of MIDI, write style-fidelity JSON of N generated pieces.", min=0, max=100_000)
    plot: bool = setting(False, "Also write a piano-roll PNG beside each MIDI file (needs -o).")


@dataclass
class DemoSettings(Settings):
    """``musictl demo``: the whole chain with tiny settings."""

    style: str = setting("fiddle-tunes", "Style of the bundled corpus to generate in.")
    bars: int = setting(16, "Bars of demo.mid.", min=1, max=10_000, flag="--bars")
    steps: int = setting(500, "Pre-training steps of the tiny MidiBert.", min=1)
    gcn_epochs: int = setting(GCN_MAX_EPOCHS, "Maximum GCN epochs (early stopping usually ends sooner).", min=1)
    seed: int = setting(0, SEED_HELP)


SynthName = Literal["auto", "soundfont", "simple"]


@dataclass
class RenderSettings(Settings):
    """``musictl render``: MIDI to WAV."""

    synth: SynthName = setting("auto", "soundfont: a General MIDI soundfont (tinysoundfont); simple: the built-in synth; "
                                       "auto: the soundfont when one is given or found, else simple.")
    sample_rate: int = setting(32000, "Samples per second of the WAV.", min=8000, max=192000)
