"""``generate-rwr --notes-by transformer``: the walk lays out rhythm, parts and restarts, the adapted next-note model
chooses pitches and durations among the style graph's successors, fed the notes as they will be written (in the key
the piece is placed in); seeded; a missing or damaged adapted model is a one-line error naming musictl adapt."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest
import torch
from symusic import Score
from typer.testing import CliRunner

from musictl import constants as C
from musictl.bert import adapt, nextnote
from musictl.bert.model import MidiBertConfig, MidiBertForPreTraining
from musictl.cli import app
from musictl.midi.tokens import TokenCorpus
from musictl.transfer import keys
from musictl.transfer.adjacency import build_graph
from musictl.transfer.generator import AdaptedNotes, StyleGenerator
from musictl.transfer.settings import WalkSettings

runner = CliRunner()
TINY_BERT = ["--hidden-size", "32", "--layers", "1", "--heads", "2", "--field-embed-dim", "8", "--max-len", "64",
             "--max-steps", "3", "--eval-every", "3", "--device", "cpu"]
TINY_GCN = ["--epochs", "5", "--hidden", "16", "--out-dim", "8", "--device", "cpu", "--no-baselines"]
TINY_ADAPT = ["--max-len", "64", "--batch-size", "4", "--epochs", "2", "--patience", "2", "--device", "cpu"]
TRANSFORMER = ["--notes-by", "transformer"]


def invoke(ws, *args):
    return runner.invoke(app, [*map(str, args), "--workdir", str(ws)])


def ok(ws, *args):
    result = invoke(ws, *args)
    assert result.exit_code == 0, result.output
    return result


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.fixture(scope="module")
def chain(tokens_dir, tmp_path_factory):
    """A workspace with tokens, a tiny bert, graph/waltz (common key), gcn/waltz and adapted/waltz. Copy to change it."""
    ws = tmp_path_factory.mktemp("generate-transformer") / "ws"
    shutil.copytree(tokens_dir, ws / "tokens")
    ok(ws, "pretrain-bert", *TINY_BERT)
    ok(ws, "embed")
    ok(ws, "adjacency", "--style", "waltz")
    ok(ws, "train-gcn", "--style", "waltz", *TINY_GCN)
    ok(ws, "adapt", "--style", "waltz", *TINY_ADAPT)
    return ws


def test_the_transformer_writes_a_playable_piece_and_honours_the_seed(chain, tmp_path):
    paths = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        paths[name] = tmp_path / f"{name}.mid"
        ok(chain, "generate-rwr", "--style", "waltz", "-n", 8, *TRANSFORMER, "--seed", seed, "-o", paths[name])
    score = Score.from_midi(paths["a"].read_bytes())
    assert len(score.tempos) == 1 and len(score.time_signatures) == 1
    ts = score.time_signatures[0]
    bar = score.ticks_per_quarter * 4 * ts.numerator // ts.denominator
    starts = np.concatenate([t.notes.numpy()["time"] for t in score.tracks])
    ends = np.concatenate([t.notes.numpy()["time"] + t.notes.numpy()["duration"] for t in score.tracks])
    assert sorted(set((starts // bar).tolist())) == list(range(8)) and ends.max() <= 8 * bar
    assert paths["a"].read_bytes() == paths["b"].read_bytes()  # the same seed: the same file
    assert paths["a"].read_bytes() != paths["c"].read_bytes()  # another seed: another piece


def _loaded(ws) -> StyleGenerator:
    generator = StyleGenerator.load(ws, "waltz")
    generator.use_adapted(ws)
    return generator


def _common_key_values(generator: StyleGenerator, piece: np.ndarray, shift: int) -> np.ndarray:
    """A placed piece's note values moved back to the key the graph counts in (drums stay)."""
    values = piece.astype(np.int64) - C.N_SPECIAL
    if generator.keys is not None:
        pitched = values[:, C.INSTRUMENT] != C.DRUM_PROGRAM
        values[pitched, C.PITCH] += shift
    return values


def test_every_pitch_and_duration_is_a_successor_the_graph_allows(chain):
    generator = _loaded(chain)
    walker = generator.walker
    assert generator.keys is not None  # adjacency's default: the common key
    checked = 0
    for seed in range(3):
        piece = generator.generate(bars=8, seed=seed, settings=WalkSettings(notes_by="transformer", restart=0.0))
        _, _, shift = generator.seed_and_key(seed)
        values = _common_key_values(generator, piece, shift)
        for program in np.unique(values[:, C.INSTRUMENT]):
            part = values[values[:, C.INSTRUMENT] == program]  # in the order written (onset, then pitch)
            for f in (C.PITCH, C.DURATION):
                nodes = [walker.node(f, v) for v in part[:, f]]
                assert min(nodes) >= 0  # every value is a node of the graph
                for before, after in itertools.pairwise(nodes):  # without restarts the context is the part's last note
                    successors = walker.by_field[f][walker._row(before, walker.by_field[f]) > 0]
                    assert after in successors or len(successors) == 0
                    checked += 1
    assert checked > 50


def _biased_model(corpus: TokenCorpus, pitch_class: int) -> nextnote.MidiBertForNextNote:
    """A next-note model whose pitch head puts (nearly) all its mass on one pitch class, whatever the context."""
    torch.manual_seed(0)
    config = MidiBertConfig.of_size("tiny", corpus.config, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    field_embed_dim=8, max_position_embeddings=64)
    model = nextnote.MidiBertForNextNote.from_encoder(MidiBertForPreTraining(config))
    output = model.next_heads.heads[C.PITCH][-1]
    with torch.no_grad():
        output.weight.zero_()
        output.bias.zero_()
        output.bias[C.N_SPECIAL + np.flatnonzero(np.arange(128) % 12 == pitch_class)] = 20.0
    return model.eval()


def _pitch_class_share(piece: np.ndarray, pitch_class: int) -> float:
    values = piece.astype(np.int64) - C.N_SPECIAL
    pitches = values[values[:, C.INSTRUMENT] != C.DRUM_PROGRAM, C.PITCH]
    return float(np.mean(pitches % 12 == pitch_class))


@pytest.mark.parametrize("style", ["waltz", "march"])
def test_a_transformer_that_prefers_one_pitch_class_writes_it_in_the_placed_key(tokens_dir, style):
    corpus = TokenCorpus.open(tokens_dir)
    generator = StyleGenerator.from_graph(style, corpus, build_graph(corpus, corpus.select(style=style, split="train"),
                                                                    key="common"))
    common, _ = keys.to_common_key([corpus.piece_tokens(p) for p in corpus.select(style=style, split="train")],
                                   corpus.config)
    counted = np.concatenate(common).astype(np.int64) - C.N_SPECIAL
    favourite = int(np.bincount(counted[:, C.PITCH] % 12, minlength=12).argmax())  # in the common key
    moved = 0
    for seed in range(3):
        _, _, shift = generator.seed_and_key(seed)
        moved += shift != 0
        written = (favourite - shift) % 12  # that pitch class where this piece is placed
        generator.use_adapted(model=_biased_model(corpus, written), max_len=64)
        by_model = generator.generate(bars=8, seed=seed, settings=WalkSettings(notes_by="transformer"))
        by_walk = generator.generate(bars=8, seed=seed)
        assert _pitch_class_share(by_model, written) > _pitch_class_share(by_walk, written) + 0.2, (seed, shift)
    assert moved  # at least one piece placed away from the common key: the model was fed the written pitches


def continuations(monkeypatch) -> list:
    """Every :class:`~musictl.bert.nextnote.Continuation` the generator makes from now on, as it fills it."""
    made = []
    original = AdaptedNotes.continuation

    def spy(self):
        made.append(original(self))
        return made[-1]

    monkeypatch.setattr(AdaptedNotes, "continuation", spy)
    return made


def test_the_model_reads_each_note_as_it_is_written(chain, monkeypatch):
    generator = _loaded(chain)
    made = continuations(monkeypatch)
    piece = generator.generate(bars=8, seed=2, settings=WalkSettings(notes_by="transformer"))
    fed = np.stack(made[0].notes)
    assert len(made) == 1 and fed.shape == piece.shape
    others = [f for f in range(C.N_FIELDS) if f != C.DURATION]  # durations may still be cut where a pitch repeats
    assert np.array_equal(fed[:, others], piece[:, others])
    assert (fed[:, C.DURATION] >= piece[:, C.DURATION]).all()


def test_the_transformer_continues_the_prompt(chain, tmp_path, monkeypatch):
    """With --prompt, the model's first context is the prompt's notes, its last bar just before the piece's first."""
    generator = _loaded(chain)
    corpus = generator.corpus
    piece = corpus.select(style="waltz")[0]
    prompt = tmp_path / "prompt.mid"
    prompt.write_bytes(generator.midi(corpus.piece_tokens(piece)[:40]))
    made = continuations(monkeypatch)
    written = generator.generate(bars=4, seed=1, settings=WalkSettings(notes_by="transformer"), prompt=prompt)
    from musictl.midi.encode import encode_file

    given = encode_file(prompt, corpus.config).tokens
    fed = np.stack(made[0].notes)
    assert len(fed) == len(given) + len(written)
    others = [f for f in range(C.N_FIELDS) if f != C.BAR]
    assert np.array_equal(fed[: len(given), others], given[:, others])
    bars = fed[: len(given) + 1, C.BAR] - C.N_SPECIAL
    # the prompt's bars keep their steps and end one bar before the piece's first (bars count modulo max_bars)
    assert np.array_equal(np.diff(bars[: len(given)]) % corpus.config.max_bars,
                          np.diff(given[:, C.BAR]) % corpus.config.max_bars)
    assert (bars[len(given)] - bars[len(given) - 1]) % corpus.config.max_bars == 1
    without = generator.generate(bars=4, seed=1, settings=WalkSettings(notes_by="transformer"))
    assert len(made) == 2 and len(made[1].notes) == len(without)  # no prompt: nothing before the piece


def test_the_continuation_is_the_distribution_after_the_last_window(chain):
    model = adapt.load_adapted(chain / "adapted" / "waltz")
    corpus = TokenCorpus.open(chain / "tokens")
    tokens = corpus.piece_tokens(corpus.select(style="waltz")[0])[:80]
    continuation = nextnote.Continuation(model, 64, corpus.config.max_bars)
    for row in tokens:
        continuation.append(row)
    expected = nextnote.distribution_after(model, tokens, 64, corpus.config.max_bars)
    for got, want in zip(continuation.distribution(), expected):
        assert np.allclose(got, want, atol=1e-5)
    assert continuation.distribution() is continuation.distribution()  # one forward pass per written note


def test_a_missing_or_damaged_adapted_model_is_a_one_line_error(chain, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(chain, ws)
    out = tmp_path / "out.mid"
    shutil.move(ws / "adapted" / "waltz", tmp_path / "kept")
    line = one_line_error(invoke(ws, "generate-rwr", "--style", "waltz", *TRANSFORMER, "-o", out))
    assert "needs adapted/waltz, which is missing" in line and line.endswith("run: musictl adapt --style waltz" +
                                                                              f" --workdir {ws}")
    elsewhere = tmp_path / "elsewhere"
    line = one_line_error(invoke(ws, "generate-rwr", "--style", "waltz", *TRANSFORMER, "--model", elsewhere, "-o", out))
    assert f"musictl adapt --style waltz -o {elsewhere}" in line
    shutil.move(tmp_path / "kept", ws / "adapted" / "waltz")
    adapter = ws / "adapted" / "waltz" / adapt.ADAPTER_FILE
    adapter.write_bytes(adapter.read_bytes()[: adapter.stat().st_size // 2])
    line = one_line_error(invoke(ws, "generate-rwr", "--style", "waltz", *TRANSFORMER, "-o", out))
    assert "remake it: musictl adapt --style waltz --overwrite" in line
    assert not out.exists()
    ok(ws, "generate-rwr", "--style", "waltz", "-n", 4, "-o", out)  # the walk alone does not need the adapted model


def test_the_transformer_options_need_notes_by_transformer(chain, tmp_path):
    out = tmp_path / "out.mid"
    for args in (("--top-p", "0.9"), ("--transformer-weight", "0.5"), ("--model", tmp_path)):
        result = invoke(chain, "generate-rwr", "--style", "waltz", *args, "-o", out)
        assert result.exit_code == 2 and "--notes-by transformer" in result.output, result.output
    with pytest.raises(Exception, match="--notes-by transformer needs the style's adapted model; run: musictl adapt"):
        StyleGenerator.load(chain, "waltz").generate(bars=2, settings=WalkSettings(notes_by="transformer"))


def test_a_partial_weight_and_top_p_still_write_within_the_graph(chain):
    generator = _loaded(chain)
    settings = WalkSettings(notes_by="transformer", transformer_weight=0.5, top_p=0.5, bars=4, seed=1)
    piece = generator.generate(settings=settings)
    assert np.array_equal(piece, generator.generate(settings=settings))
    values = _common_key_values(generator, piece, generator.seed_and_key(1)[2])
    assert all(generator.walker.node(C.PITCH, v) >= 0 for v in values[:, C.PITCH])


def test_status_suggests_the_transformer_once_a_style_has_a_graph_and_an_adapted_model():
    from musictl.workspace import ArtifactStatus, next_step

    def made(kind: str, name: str | None = None, state: str = "fresh") -> ArtifactStatus:
        return ArtifactStatus(kind=kind, name=name, path=f"ws/{kind}", made_by=f"musictl {kind}", state=state)

    chain = [made("tokens"), made("bert"), made("embeddings"), made("graph", "waltz"), made("gcn", "waltz")]
    assert next_step(chain) == "musictl generate-rwr -n 16 > out.mid"
    assert next_step([*chain, made("adapted", "march")]) == "musictl generate-rwr -n 16 > out.mid"  # no graph of march
    assert next_step([*chain, made("adapted", "waltz")]) == \
        "musictl generate-rwr --style waltz --notes-by transformer -n 16 > out.mid"
