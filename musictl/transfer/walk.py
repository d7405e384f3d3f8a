"""A random walk with restart on a style graph that writes whole pieces of valid Octuple notes.

A piece takes one plan from the style (:class:`musictl.transfer.tables.PiecePlan`): one metre, one
tempo and one instrumentation, so it has exactly one tempo and one time signature. Bars are filled
in order: onsets follow the style's onset-to-onset transitions for that metre (every bar gets at
least one), and at each onset as many notes start as the style's chord sizes there say. For each
note the walk draws its instrument (among the plan's), pitch, duration and velocity from the graph:

    p(c) ∝ s(prev, c) * s(same field of the context note, c) * exp(cos(z_prev, z_c) / temperature)

where ``s(x, c)`` is the style graph's edge weight between ``x`` and ``c`` as a share of ``x``'s weights
to all candidates (lightly smoothed), with the self-loop weight when ``c`` repeats ``x`` (repeated
notes); ``z`` are the GCN node embeddings, ``prev`` the token just drawn for this note, and the
context note the previous note of the same instrument. The product asks a candidate to fit both the
note being written and the line it continues. With probability
``restart`` per note the context jumps back to a seed note (from ``--prompt`` or the style). No two
notes of one instrument share a pitch and an onset, a note ends where the next of its pitch begins,
and the last bar's notes end at the piece's end, so the MIDI has no conflicting events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from musictl import constants as C
from musictl.errors import MusictlError
from musictl.midi.vocab import TokenizerConfig
from musictl.progress import Progress
from musictl.transfer.settings import WalkSettings
from musictl.transfer.tables import PiecePlan, StyleTables

DENSE_LIMIT = 6000  # nodes up to which the adjacency is kept dense for fast rows
SMOOTHING = 0.01  # share of a row's mean weight given to every candidate, so unseen pairs stay possible


@dataclass
class _Context:
    """Node per field of the notes that condition the next one."""

    last: np.ndarray  # the previous note (any instrument)
    by_program: dict[int, np.ndarray] = field(default_factory=dict)  # the previous note of each instrument


class RandomWalker:
    def __init__(self, nodes: np.ndarray, adjacency: sp.csr_matrix, embeddings: np.ndarray, config: TokenizerConfig,
                 tables: StyleTables, loops: np.ndarray | None = None):
        self.config = config
        self.tables = tables
        self.nodes = nodes
        self.field = np.searchsorted(config.field_offsets, nodes, side="right") - 1
        self.value = nodes - config.field_offsets[self.field]
        self.index = {int(t): i for i, t in enumerate(nodes)}
        self.dense = adjacency.toarray() if len(nodes) <= DENSE_LIMIT else None
        self.adjacency = adjacency.tocsr()
        self.loops = np.zeros(len(nodes)) if loops is None else np.asarray(loops, dtype=np.float64)
        z = np.asarray(embeddings, dtype=np.float64)
        self.z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        self.by_field = [np.flatnonzero(self.field == f) for f in range(C.N_FIELDS)]
        missing = [C.FIELDS[f] for f in (C.INSTRUMENT, C.PITCH, C.DURATION, C.VELOCITY) if len(self.by_field[f]) == 0]
        if missing:
            raise MusictlError(f"the style graph has no {', '.join(missing)} tokens to walk on; rebuild it with musictl adjacency")
        if not tables.plans:
            raise MusictlError("the style has no pieces with notes to take a metre, tempo and instrumentation from")

    def node(self, field: int, value: int) -> int:
        """The node of a field value, or -1 when the style never uses it."""
        return self.index.get(int(self.config.field_offsets[field]) + int(value), -1)

    def _row(self, node: int, candidates: np.ndarray) -> np.ndarray:
        if node < 0:
            return np.zeros(len(candidates))
        row = self.dense[node, candidates] if self.dense is not None else np.asarray(self.adjacency[node, candidates].todense()).ravel()
        return row + np.where(candidates == node, self.loops[node], 0.0)  # the token again: a repeat

    def _share(self, node: int, candidates: np.ndarray) -> np.ndarray:
        """How often each candidate meets ``node`` in the style, as a distribution over the candidates
        (lightly smoothed; uniform without a context node)."""
        weight = self._row(node, candidates)
        weight = weight + SMOOTHING * (weight.mean() if weight.any() else 1.0)
        return weight / weight.sum()

    def _choose(self, candidates: np.ndarray, context: tuple[int, int], temperature: float, rng,
                prior: np.ndarray | None = None) -> int:
        logits = np.log(self._share(context[0], candidates)) + np.log(self._share(context[1], candidates))
        if prior is not None:
            logits = logits + np.log(np.maximum(prior, 1e-12))
        if context[0] >= 0:
            logits = logits + (self.z[candidates] @ self.z[context[0]]) / temperature
        logits -= logits.max()
        p = np.exp(logits)
        return int(candidates[rng.choice(len(candidates), p=p / p.sum())])

    def plan(self, settings: WalkSettings, rng: np.random.Generator, plan: PiecePlan | None = None) -> PiecePlan:
        """The piece's plan: ``plan``, else one of the style's pieces', with ``--tempo`` / ``--program`` applied."""
        chosen = plan or self.tables.plans[int(rng.integers(len(self.tables.plans)))]
        if settings.program is not None:
            chosen = chosen.with_program(settings.program)
        if settings.tempo is not None:
            tempo = int(np.argmin(np.abs(np.log2(self.config.tempo_values / settings.tempo))))
            chosen = PiecePlan(chosen.time_signature, tempo, chosen.programs, chosen.shares)
        return chosen

    def walk(self, seeds: np.ndarray, settings: WalkSettings, plan: PiecePlan | None = None,
             on_progress: Progress | None = None) -> np.ndarray:
        """``(n_notes, 8)`` token ids of a piece of exactly ``settings.bars`` full bars.

        ``seeds`` are seed notes as node indices ``(n, 8)`` (-1 where a token is not a node);
        ``on_progress`` hears of every bar.
        """
        rng = np.random.default_rng(settings.seed)
        plan = self.plan(settings, rng, plan)
        context = _Context(last=seeds[0].copy())
        rows: list[list[int]] = []
        bars: list[int] = []
        for bar in range(settings.bars):
            position, in_bar = None, 0
            while in_bar < settings.max_notes_per_bar:
                position = self.tables.next_onset(plan.time_signature, position, rng)
                if position is None:
                    break
                size = min(self.tables.chord_size(plan.time_signature, position, rng), settings.max_notes_per_bar - in_bar)
                taken: set[tuple[int, int]] = set()  # (instrument, pitch) already starting here
                for _ in range(size):
                    row = self._note(bar, position, plan, taken, seeds, settings, rng, context)
                    if row is None:
                        break
                    rows.append(row)
                    bars.append(bar)
                    in_bar += 1
            if on_progress:
                on_progress(bar + 1, settings.bars, None)
        return settle(np.asarray(rows, dtype=np.int64), np.asarray(bars), self.config, settings.bars) + C.N_SPECIAL

    def _note(self, bar: int, position: int, plan: PiecePlan, taken: set, seeds: np.ndarray, settings: WalkSettings,
              rng, context: _Context) -> list[int] | None:
        """One note at ``position`` of ``bar``; None when every pitch of the instrument is taken here."""
        restart = rng.random() < settings.restart
        seed = seeds[rng.integers(len(seeds))] if restart else None
        row = [0] * C.N_FIELDS
        row[C.BAR], row[C.POSITION] = bar % self.config.max_bars, position
        row[C.TIME_SIGNATURE], row[C.TEMPO] = plan.time_signature, plan.tempo
        chosen = [self.node(f, v) for f, v in enumerate(row)]
        prev = next((chosen[f] for f in (C.POSITION, C.BAR) if chosen[f] >= 0), context.last[C.TEMPO])
        nodes = np.array([self.node(C.INSTRUMENT, p) for p in plan.programs])
        if (nodes >= 0).all():  # which part plays here: what the style plays at this position (no stickiness)
            prior = None if self._row(prev, nodes).any() else plan.shares  # no graph evidence: the plan's shares
            chosen[C.INSTRUMENT] = self._choose(nodes, (prev, -1), settings.temperature, rng, prior)
            row[C.INSTRUMENT] = int(self.value[chosen[C.INSTRUMENT]])
            prev = chosen[C.INSTRUMENT]
        else:  # a --program the style never uses: no graph context for the instrument
            row[C.INSTRUMENT] = int(plan.programs[rng.choice(len(plan.programs), p=plan.shares)])
        note = seed if seed is not None else context.by_program.get(row[C.INSTRUMENT], context.last)
        for f in (C.PITCH, C.DURATION, C.VELOCITY):
            candidates = self.by_field[f]
            if f == C.PITCH:
                candidates = candidates[[(row[C.INSTRUMENT], int(v)) not in taken for v in self.value[candidates]]]
                if len(candidates) == 0:
                    return None
            chosen[f] = self._choose(candidates, (prev, note[f]), settings.temperature, rng)
            row[f], prev = int(self.value[chosen[f]]), chosen[f]
        taken.add((row[C.INSTRUMENT], row[C.PITCH]))
        context.last = np.array([c if c >= 0 else p for c, p in zip(chosen, context.last)])
        context.by_program[row[C.INSTRUMENT]] = context.last
        return row

    def seed_nodes(self, tokens: np.ndarray) -> np.ndarray:
        """Seed notes as node indices (-1 for tokens that are not nodes of this graph)."""
        flat = tokens.astype(np.int64) - C.N_SPECIAL + self.config.field_offsets
        seeds = np.vectorize(lambda t: self.index.get(int(t), -1))(flat) if len(flat) else np.zeros((0, 8), dtype=np.int64)
        seeds = seeds[(seeds[:, 1:] >= 0).sum(1) >= 4] if len(seeds) else seeds
        if len(seeds) == 0:
            raise MusictlError("none of the seed notes share tokens with the style graph; use a prompt in the style's range")
        return seeds


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
