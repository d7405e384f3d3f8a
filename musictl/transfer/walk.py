"""A random walk with restart on a style graph that writes whole pieces of valid Octuple notes.

A piece takes one plan from the style (:class:`musictl.transfer.tables.PiecePlan`): one metre, one
tempo and one instrumentation, so it has exactly one tempo and one time signature. The walk first
lays out the rhythm, bar by bar and in order: onsets follow the style's onset-to-onset transitions
for that metre (every bar gets at least one), as many notes start at each onset as the style's chord
sizes there say, and each note's part is drawn from what the style plays at that position. So each
note knows how long its part waits until its next onset (the *gap*). Then each note's pitch,
duration and velocity are drawn, in order:

    p(c) ∝ [(1 - mix) · s(x, c) + mix · q(x, c)] · [same for prev, co-occurrence graphs only] · a(c)

- ``x`` is the same field's token of the context note, the previous note of the same part: on a
  transition graph ``s(x, c)`` is the share of ``x``'s transitions that go to ``c`` (a Markov chain),
  on a co-occurrence graph the share of ``x``'s weight that meets ``c``. When ``c`` repeats ``x`` its
  weight is the self-loop weight (repeated notes). Shares are lightly smoothed.
- ``q(x, c)`` is the trained link predictor's probability of the edge ``x``-``c`` (the sigmoid of its
  decoder on the GCN node embeddings), normalised over the candidates; ``mix`` weighs it against the
  counts. ``--no-gcn`` sets the embeddings to zero: the decoder then scores every pair alike, so
  ``q`` is uniform.
- ``prev`` (co-occurrence graphs only, whose edges link the tokens of one note) is the token just
  drawn for this note.
- ``a(c)`` is 1, except for durations: how well the duration fits the gap by the style's
  articulation (duration / gap ratios, :meth:`StyleTables.duration_weights`). A legato style gets
  notes that last until the part's next onset; a detached style, shorter ones.

Probabilities are raised to ``1 / temperature``. A field that is not a node of the graph takes its
values from the style's notes of that instrument. With probability ``restart`` per note the context
jumps back to a seed note (from ``--prompt`` or the style). No two notes of one instrument share a
pitch and an onset, a note ends where the next of its pitch begins, and the last bar's notes end at
the piece's end, so the MIDI has no conflicting events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from musictl import constants as C
from musictl.errors import MusictlError
from musictl.midi.vocab import TokenizerConfig
from musictl.progress import Progress
from musictl.transfer.settings import WalkSettings
from musictl.transfer.tables import PiecePlan, StyleTables, next_onset_gaps

DENSE_LIMIT = 6000  # nodes up to which the adjacency is kept dense for fast rows
SMOOTHING = 0.01  # share of a row's mean weight given to every candidate, so unseen pairs stay possible
MIXES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)  # the mixing weights tried on validation pieces
DEFAULT_MIX = 0.05  # without validation pieces (the median choice on the bundled styles)
NOTE_FIELDS = (C.PITCH, C.DURATION, C.VELOCITY)  # drawn for each note, in this order
MODEL_FIELDS = (C.PITCH, C.DURATION)  # chosen by the transformer with --notes-by transformer


@dataclass
class _Context:
    """Node per field of the notes that condition the next one."""

    last: np.ndarray  # the previous note (any instrument)
    by_program: dict[int, np.ndarray] = field(default_factory=dict)  # the previous note of each instrument


@dataclass
class _Slot:
    """Where a note goes: its bar, position and part, and how long until its part's next onset."""

    bar: int
    position: int
    program: int
    gap: float = 0.0


class RandomWalker:
    """Walks pieces on a style graph (see the module docstring).

    ``adjacency``: the style graph (``directed``: transition counts, row -> column); ``loops``: self-loop
    weights; ``links``: ``(n, n)`` link probabilities of the trained predictor (None: no predictor, counts only).
    """

    def __init__(self, nodes: np.ndarray, adjacency: sp.csr_matrix, config: TokenizerConfig, tables: StyleTables,
                 loops: np.ndarray | None = None, links: np.ndarray | None = None, directed: bool = False):
        self.config = config
        self.tables = tables
        self.nodes = nodes
        self.directed = directed
        self.field = np.searchsorted(config.field_offsets, nodes, side="right") - 1
        self.value = nodes - config.field_offsets[self.field]
        self.index = {int(t): i for i, t in enumerate(nodes)}
        self.dense = adjacency.toarray() if len(nodes) <= DENSE_LIMIT else None
        self.adjacency = adjacency.tocsr()
        self.loops = np.zeros(len(nodes)) if loops is None else np.asarray(loops, dtype=np.float64)
        self.links = None if links is None else np.asarray(links, dtype=np.float64)
        if self.links is not None and self.links.shape != (len(nodes), len(nodes)):
            raise MusictlError(f"link probabilities of shape {self.links.shape} do not match the graph's {len(nodes)} "
                               "nodes; retrain the GCN on this graph")
        self.mix = DEFAULT_MIX  # used when WalkSettings.mix is None; see choose_mix
        self.by_field = [np.flatnonzero(self.field == f) for f in range(C.N_FIELDS)]
        self.graph_fields = [f for f in range(C.N_FIELDS) if len(self.by_field[f])]
        if not self.graph_fields:
            raise MusictlError("the style graph has no nodes to walk on; rebuild it with musictl adjacency")
        if not tables.plans:
            raise MusictlError("the style has no pieces with notes to take a metre, tempo and instrumentation from")

    def node(self, field_index: int, value: int) -> int:
        """The node of a field value, or -1 when the graph has no such node."""
        return self.index.get(int(self.config.field_offsets[field_index]) + int(value), -1)

    # ----- the terms of p(c) ------------------------------------------------------------------
    def _row(self, node: int, candidates: np.ndarray) -> np.ndarray:
        if node < 0:
            return np.zeros(len(candidates))
        row = self.dense[node, candidates] if self.dense is not None else np.asarray(self.adjacency[node, candidates].todense()).ravel()
        return row + np.where(candidates == node, self.loops[node], 0.0)  # the token again: a repeat

    def _share(self, node: int, candidates: np.ndarray) -> np.ndarray:
        """How often each candidate follows (or meets) ``node`` in the style, as a distribution over the candidates
        (lightly smoothed; uniform without a context node)."""
        weight = self._row(node, candidates)
        weight = weight + SMOOTHING * (weight.mean() if weight.any() else 1.0)
        return weight / weight.sum()

    def _links(self, node: int, candidates: np.ndarray, use: bool) -> np.ndarray:
        """The link predictor's probabilities of ``node``-candidate edges, normalised (uniform: no predictor, z = 0)."""
        if node < 0 or self.links is None or not use:
            return np.full(len(candidates), 1.0 / len(candidates))
        p = np.maximum(self.links[node, candidates], 1e-12)
        return p / p.sum()

    def _term(self, node: int, candidates: np.ndarray, settings: WalkSettings) -> np.ndarray:
        """(1 - mix) * counts + mix * link probabilities; counts alone without a link predictor (a Markov chain)."""
        if self.links is None:
            return self._share(node, candidates)
        mix = self.mix if settings.mix is None else settings.mix
        return (1 - mix) * self._share(node, candidates) + mix * self._links(node, candidates, settings.gcn)

    # ----- the mixing weight, by likelihood ---------------------------------------------------------
    def transition_nll(self, pieces: list[np.ndarray], mix: float, fields: tuple[int, ...] = (C.PITCH, C.DURATION)) -> float:
        """Mean negative log-likelihood (nats) of each note's ``fields`` given the previous note of its part, under
        the walk's transition term with ``mix``, over the transitions whose values are both nodes."""
        from musictl.transfer.adjacency import parts

        total, count = 0.0, 0
        settings = WalkSettings(mix=mix)
        for f in fields:
            candidates = self.by_field[f]
            if len(candidates) == 0:
                continue
            table = np.stack([self._term(int(x), candidates, settings) for x in candidates])  # rows: previous node
            column = {int(node): i for i, node in enumerate(candidates)}
            for tokens in pieces:
                values = tokens.astype(np.int64) - C.N_SPECIAL
                for rows in parts(values):
                    a = [column.get(self.node(f, v), -1) for v in values[rows[:-1], f]]
                    b = [column.get(self.node(f, v), -1) for v in values[rows[1:], f]]
                    pairs = np.array([(i, j) for i, j in zip(a, b) if i >= 0 and j >= 0], dtype=np.int64).reshape(-1, 2)
                    total -= float(np.log(table[pairs[:, 0], pairs[:, 1]]).sum())
                    count += len(pairs)
        return total / max(count, 1)

    def choose_mix(self, pieces: list[np.ndarray]) -> float:
        """The mixing weight of :data:`MIXES` with the lowest :meth:`transition_nll` on ``pieces`` (the style's
        validation pieces); it becomes the walk's default. Without pieces or a predictor: :data:`DEFAULT_MIX`."""
        if self.links is not None and pieces:
            scores = {mix: self.transition_nll(pieces, mix) for mix in MIXES}
            self.mix = min(scores, key=scores.get)
        return self.mix

    def _choose(self, candidates: np.ndarray, line: int, prev: int, settings: WalkSettings, rng,
                prior: np.ndarray | None = None) -> int:
        logits = np.log(self._term(line, candidates, settings))
        if not self.directed:  # co-occurrence edges link the tokens of one note too
            logits = logits + np.log(self._term(prev, candidates, settings))
        if prior is not None:
            logits = logits + np.log(np.maximum(prior, 1e-300))
        return int(candidates[_sample(logits / settings.temperature, rng)])

    # ----- a piece ------------------------------------------------------------------------------
    def plan(self, settings: WalkSettings, rng: np.random.Generator, plan: PiecePlan | None = None) -> PiecePlan:
        """The piece's plan: ``plan``, else one of the style's pieces', with ``--tempo`` / ``--program`` applied."""
        chosen = plan or self.tables.plans[int(rng.integers(len(self.tables.plans)))]
        if settings.program is not None:
            chosen = chosen.with_program(settings.program)
        if settings.tempo is not None:
            tempo = int(np.argmin(np.abs(np.log2(self.config.tempo_values / settings.tempo))))
            chosen = PiecePlan(chosen.time_signature, tempo, chosen.programs, chosen.shares)
        return chosen

    def rhythm(self, plan: PiecePlan, settings: WalkSettings, rng) -> list[_Slot]:
        """Every note's bar, position and part, bars in order, and the gap to its part's next onset (the last
        onset of a part: to the piece's end)."""
        slots: list[_Slot] = []
        ts = plan.time_signature
        for bar in range(settings.bars):
            position, in_bar = None, 0
            while in_bar < settings.max_notes_per_bar:
                position = self.tables.next_onset(ts, position, rng)
                if position is None:
                    break
                size = min(self.tables.chord_size(ts, position, rng), settings.max_notes_per_bar - in_bar)
                weights = self.tables.part_weights(ts, position, plan.programs, plan.shares)
                for _ in range(size):
                    program = int(plan.programs[rng.choice(len(plan.programs), p=weights / weights.sum())])
                    slots.append(_Slot(bar, position, program))
                    in_bar += 1
        units = int(self.config.time_signature_units[ts])
        onset = np.array([s.bar * units + s.position for s in slots], dtype=np.float64)
        gaps = next_onset_gaps(onset, np.array([s.program for s in slots]), end=settings.bars * units)
        for slot, gap in zip(slots, gaps):
            slot.gap = float(gap)
        return slots

    def walk(self, seeds: np.ndarray, settings: WalkSettings, plan: PiecePlan | None = None,
             on_progress: Progress | None = None, notes: NextNotes | None = None, shift: int = 0) -> np.ndarray:
        """``(n_notes, 8)`` token ids of a piece of exactly ``settings.bars`` full bars.

        ``seeds`` are seed notes as node indices ``(n, 8)`` (-1 where a token is not a node);
        ``on_progress`` hears of every bar. ``notes`` (with ``--notes-by transformer``): the model that chooses
        pitches and durations, fed every note as it will be written, its pitch moved by ``-shift`` (the placing of
        a common-key walk, :func:`musictl.transfer.keys.place`; see :meth:`_model_note`).
        """
        if settings.notes_by == "transformer" and notes is None:
            raise MusictlError("--notes-by transformer needs the style's adapted model; run: musictl adapt --style STYLE")
        rng = np.random.default_rng(settings.seed)  # own seeding: a generated piece, the same for the same --seed as before
        plan = self.plan(settings, rng, plan)
        slots = self.rhythm(plan, settings, rng)
        if settings.notes_by == "transformer":  # the encoder's order within an onset: by instrument, then pitch
            slots.sort(key=lambda s: (s.bar, s.position, s.program))
        writer = _Writer(notes, shift, self.config.max_bars) if settings.notes_by == "transformer" else None
        context = _Context(last=seeds[0].copy())
        rows: list[list[int]] = []
        bars: list[int] = []
        taken: set[tuple[int, int]] = set()  # (instrument, pitch) already starting at this onset
        for i, slot in enumerate(slots):
            if i == 0 or (slot.bar, slot.position) != (slots[i - 1].bar, slots[i - 1].position):
                taken = set()
            row = self._note(slot, plan, taken, seeds, settings, rng, context, writer)
            if row is not None:
                rows.append(row)
                bars.append(slot.bar)
            if on_progress and (i + 1 == len(slots) or slots[i + 1].bar != slot.bar):
                on_progress(slot.bar + 1, settings.bars, None)
        return settle(np.asarray(rows, dtype=np.int64), np.asarray(bars), self.config, settings.bars) + C.N_SPECIAL

    def _start(self, slot: _Slot, plan: PiecePlan, seeds: np.ndarray, settings: WalkSettings, rng, context: _Context):
        """A note's fixed fields (bar, position, instrument, metre, tempo) and their nodes, the node the next choice
        follows, and the context note: a restart's seed note (with probability ``restart``) or the part's last."""
        restart = rng.random() < settings.restart
        seed = seeds[rng.integers(len(seeds))] if restart else None
        row = [0] * C.N_FIELDS
        row[C.BAR], row[C.POSITION], row[C.INSTRUMENT] = slot.bar % self.config.max_bars, slot.position, slot.program
        row[C.TIME_SIGNATURE], row[C.TEMPO] = plan.time_signature, plan.tempo
        chosen = [self.node(f, v) for f, v in enumerate(row)]
        prev = next((chosen[f] for f in (C.INSTRUMENT, C.POSITION) if chosen[f] >= 0), -1)
        note = seed if seed is not None else context.by_program.get(slot.program, context.last)
        return row, chosen, prev, note

    @staticmethod
    def _remember(row: list[int], chosen: list, taken: set, context: _Context) -> None:
        """After a note is written: its pitch is taken at this onset, and it becomes its part's context note."""
        taken.add((row[C.INSTRUMENT], row[C.PITCH]))
        context.last = np.array([c if c >= 0 else p for c, p in zip(chosen, context.last)])
        context.by_program[row[C.INSTRUMENT]] = context.last

    def _note(self, slot: _Slot, plan: PiecePlan, taken: set, seeds: np.ndarray, settings: WalkSettings,
              rng, context: _Context, writer: _Writer | None = None) -> list[int] | None:
        """One note at ``slot``; None when every pitch of the instrument is taken at this onset."""
        if writer is not None:
            return self._model_note(slot, plan, taken, seeds, settings, rng, context, writer)
        row, chosen, prev, note = self._start(slot, plan, seeds, settings, rng, context)
        for f in NOTE_FIELDS:
            prior = self.tables.duration_weights(slot.gap) if f == C.DURATION else None
            if len(self.by_field[f]):  # a node field: the walk decides
                candidates = self.by_field[f]
                if f == C.PITCH:
                    candidates = candidates[[(slot.program, int(v)) not in taken for v in self.value[candidates]]]
                    if len(candidates) == 0:
                        return None
                chosen[f] = self._choose(candidates, note[f], prev, settings, rng,
                                         None if prior is None else prior[self.value[candidates]])
                row[f], prev = int(self.value[chosen[f]]), chosen[f]
            else:  # not in the graph: the style's values for this instrument
                weights = self.tables.value_weights(f, slot.program) * (1.0 if prior is None else prior)
                if f == C.PITCH:
                    weights[[p for program, p in taken if program == slot.program]] = 0.0
                    if not weights.any():
                        return None
                row[f] = int(_sample(np.log(np.maximum(weights, 1e-300)) / settings.temperature, rng))
        self._remember(row, chosen, taken, context)
        return row

    # ----- the transformer's choices (--notes-by transformer) ---------------------------------------
    def _model_note(self, slot: _Slot, plan: PiecePlan, taken: set, seeds: np.ndarray, settings: WalkSettings,
                    rng, context: _Context, writer: _Writer) -> list[int] | None:
        """One note at ``slot`` whose pitch and duration the model chooses (velocity: the walk, as :meth:`_note`).

        The restart and the context note are the walk's. For a field that is a node of the graph the candidates are
        the graph's successors of the context note's node (its nonzero transitions, the repeat included; all the
        field's nodes when it has none among them), otherwise the values the style's part plays; a pitch also must
        not be taken at this onset, must lie above the pitches its part already has at this onset (the encoder
        stores a chord's notes by rising pitch, so the model has only seen them that way) and must stay in 0..127
        once placed. Over the candidates::

            p(c) ∝ [W · t(c) + (1 - W) · w(c)] · a(c),  then temperature and top-p

        ``t``: the model's distribution of the next note's field given the notes written so far, renormalised over
        the candidates; ``w``: the walk's transition term (:meth:`_choose`'s, normalised); ``a``: the duration's fit
        to the gap (1 for pitch); ``W``: ``--transformer-weight``.
        """
        row, chosen, prev, note = self._start(slot, plan, seeds, settings, rng, context)
        moved = slot.program != C.DRUM_PROGRAM  # drums are never transposed
        for f in NOTE_FIELDS:
            prior = self.tables.duration_weights(slot.gap) if f == C.DURATION else None
            model = f in MODEL_FIELDS
            if len(self.by_field[f]):
                candidates = self.by_field[f]
                if model and note[f] >= 0:
                    following = candidates[self._row(int(note[f]), candidates) > 0]
                    candidates = following if len(following) else candidates
                values = self.value[candidates]
            else:
                candidates = None
                weights = self.tables.value_weights(f, slot.program)
                values = np.flatnonzero(weights > 0) if model else np.arange(len(weights))
            keep = np.ones(len(values), dtype=bool)
            if f == C.PITCH:
                keep &= np.array([(slot.program, int(v)) not in taken for v in values], dtype=bool)
                if model:
                    above = max((p for program, p in taken if program == slot.program), default=-1)
                    written = values - writer.shift if moved else values
                    keep &= (values > above) & (written >= 0) & (written < 128)
            if not keep.any():
                return None
            values = values[keep]
            if candidates is not None:
                candidates = candidates[keep]
                counts = self._term(int(note[f]), candidates, settings)
                if not self.directed:
                    counts = counts * self._term(prev, candidates, settings)
            else:
                counts = weights[values] if model else weights
            counts = _normalised(counts)
            if model:
                written = values - writer.shift if (f == C.PITCH and moved) else values
                learned = np.exp(writer.log_probs(f, written))
                learned = _normalised(learned)
                weight = settings.transformer_weight
                p = weight * learned + (1 - weight) * counts
            else:
                p = counts
            if prior is not None:
                p = p * prior[values]
            logits = np.log(np.maximum(p, 1e-300)) / settings.temperature
            pick = _sample_top_p(logits, settings.top_p if model else 1.0, rng)
            row[f] = int(values[pick])
            if candidates is not None:
                chosen[f] = int(candidates[pick])
                prev = chosen[f]
        self._remember(row, chosen, taken, context)
        writer.append(row, moved)
        return row

    def seed_nodes(self, tokens: np.ndarray) -> np.ndarray:
        """Seed notes as node indices (-1 for tokens that are not nodes of this graph): notes with at least half of
        the graph's node fields."""
        flat = tokens.astype(np.int64) - C.N_SPECIAL + self.config.field_offsets
        seeds = np.vectorize(lambda t: self.index.get(int(t), -1))(flat) if len(flat) else np.zeros((0, 8), dtype=np.int64)
        needed = max(1, (len(self.graph_fields) + 1) // 2)
        seeds = seeds[(seeds[:, self.graph_fields] >= 0).sum(1) >= needed] if len(seeds) else seeds
        if len(seeds) == 0:
            raise MusictlError("none of the seed notes share tokens with the style graph; use a prompt in the style's range")
        return seeds


class NextNotes(Protocol):
    """A model that gives the next note's distribution of a piece written note by note
    (:class:`musictl.bert.nextnote.Continuation`)."""

    def append(self, row: Sequence[int]) -> None: ...

    def distribution(self) -> list[np.ndarray]: ...


class _Writer:
    """The notes of a walk as they will be written, fed to a :class:`NextNotes` model: token ids, pitched notes
    moved by ``-shift`` (the key the piece is placed in)."""

    def __init__(self, notes: NextNotes, shift: int, max_bars: int):
        self.notes, self.shift, self.max_bars = notes, int(shift), max_bars

    def log_probs(self, field_index: int, values: np.ndarray) -> np.ndarray:
        """The model's log-probabilities of the next note's ``values`` (as written) of a field."""
        return self.notes.distribution()[field_index][np.asarray(values, dtype=np.int64) + C.N_SPECIAL]

    def append(self, row: list[int], moved: bool) -> None:
        written = np.asarray(row, dtype=np.int64)
        if moved:
            written[C.PITCH] -= self.shift
        self.notes.append(written + C.N_SPECIAL)


def _normalised(weights: np.ndarray) -> np.ndarray:
    """``weights`` summing to 1 (uniform when they are all 0)."""
    total = weights.sum()
    return weights / total if total > 0 else np.full(len(weights), 1.0 / len(weights))


def _sample_top_p(logits: np.ndarray, top_p: float, rng) -> int:
    """An index drawn with probabilities proportional to ``exp(logits)``, from the fewest most likely indices whose
    probability reaches ``top_p`` (all of them at 1)."""
    if top_p >= 1.0:
        return _sample(logits, rng)
    p = np.exp(logits - logits.max())
    p = p / p.sum()
    order = np.argsort(-p, kind="stable")
    kept = order[: int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1]
    return int(kept[_sample(logits[kept], rng)])


def _sample(logits: np.ndarray, rng) -> int:
    """An index drawn with probabilities proportional to ``exp(logits)``."""
    logits = logits - logits.max()
    p = np.exp(logits)
    return int(rng.choice(len(p), p=p / p.sum()))


def fitting_duration(config: TokenizerConfig, length: np.ndarray) -> np.ndarray:
    """The longest duration code whose whole bucket fits in ``length`` positions (at least code 0)."""
    starts = config.duration_starts
    upper = np.append(starts[1:] - 1, starts[-1])  # the longest duration each code can stand for
    return np.maximum(np.searchsorted(upper, length, side="right") - 1, 0)


def settle(values: np.ndarray, bars: np.ndarray, config: TokenizerConfig, n_bars: int) -> np.ndarray:
    """Note values in the encoder's order, each note ending by the next onset of its pitch and instrument
    and by the end of the piece (one metre throughout)."""
    if len(values) == 0:
        return values.reshape(0, C.N_FIELDS)
    units = int(config.time_signature_units[values[0, C.TIME_SIGNATURE]])
    onset = bars * units + values[:, C.POSITION]
    order = np.lexsort((values[:, C.PITCH], values[:, C.INSTRUMENT], onset))
    values, onset = values[order].copy(), onset[order]
    limit = np.full(len(values), n_bars * units) - onset
    voice = values[:, C.INSTRUMENT] * 128 + values[:, C.PITCH]
    by_voice = np.lexsort((onset, voice))
    same = voice[by_voice][1:] == voice[by_voice][:-1]
    gap = onset[by_voice][1:] - onset[by_voice][:-1]
    limit[by_voice[:-1][same]] = np.minimum(limit[by_voice[:-1][same]], gap[same])
    longest = np.append(config.duration_starts[1:] - 1, config.duration_starts[-1])  # of each code's bucket
    too_long = longest[values[:, C.DURATION]] > limit
    values[too_long, C.DURATION] = fitting_duration(config, limit[too_long])
    return values
