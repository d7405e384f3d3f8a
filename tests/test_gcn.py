"""Link prediction: the study's three models, validation-only selection, and the baselines on the same test edges."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from musictl.errors import ArtifactError, UsageError
from musictl.midi.tokens import TokenCorpus
from musictl.transfer import gcn
from musictl.transfer.adjacency import build_graph
from musictl.transfer.baselines import HEURISTICS, heuristic_scores
from musictl.transfer.features import model_graph, node_features
from musictl.transfer.link_prediction import train_link_prediction
from musictl.transfer.settings import MODELS, GcnSettings

TINY = {"epochs": 6, "hidden": 16, "out_dim": 8, "patience": 3}


@pytest.fixture(scope="module")
def waltz(tokens_dir):
    corpus = TokenCorpus.open(tokens_dir)
    return corpus, build_graph(corpus, corpus.select(style="waltz"))


def _train(graph, corpus, settings, features=None, **options):
    features = np.random.default_rng(0).normal(size=(len(graph.nodes), 8)) if features is None else features
    return train_link_prediction(features, graph.undirected(), settings, fields=graph.node_fields(corpus.config),
                                 **options)


def test_heuristics_match_hand_computed_scores():
    # a path 0-1-2 plus 1-3 and 2-3: pairs (0, 2), (0, 3), (1, 2)
    edges = np.array([[0, 1, 1, 2, 1, 3, 2, 3], [1, 0, 2, 1, 3, 1, 3, 2]])
    pairs = np.array([[0, 0, 1], [2, 3, 2]])
    scores = heuristic_scores(edges, 4, pairs)
    # degrees: 0:1, 1:3, 2:2, 3:2; shared neighbours: (0,2): {1}; (0,3): {1}; (1,2): {3}
    assert scores["common_neighbours"].tolist() == [1, 1, 1]
    assert np.allclose(scores["adamic_adar"], [1 / np.log(3), 1 / np.log(3), 1 / np.log(2)])
    assert np.allclose(scores["resource_allocation"], [1 / 3, 1 / 3, 1 / 2])
    assert scores["degree_product"].tolist() == [2, 2, 6]


def test_the_three_models_by_name():
    assert {m: (GcnSettings(model=m).features, GcnSettings(model=m).graph) for m in (1, 2, 3)} == MODELS
    assert (GcnSettings().features, GcnSettings().graph) == ("token", "cooccurrence")  # model 3 is the default
    explicit = GcnSettings(model=1, features="token-pos")  # the variant knobs override the model's choice
    assert (explicit.features, explicit.graph) == ("token-pos", "similarity")
    with pytest.raises(UsageError):
        GcnSettings(model=4)


def test_model_features_and_graphs(waltz):
    corpus, graph = waltz
    rng = np.random.default_rng(0)
    table, positions = rng.normal(size=(corpus.config.n_graph_tokens, 12)), rng.normal(size=(20, 12))
    graph = build_graph(corpus, corpus.select(style="waltz"), fields=tuple(range(8)), edges="cooccurrence")
    token = node_features(table, positions, graph.nodes, corpus, "waltz", "token")
    profile = node_features(table, positions, graph.nodes, corpus, "waltz", "position-profile")
    concat = node_features(table, positions, graph.nodes, corpus, "waltz", "token-pos")
    assert token.shape == (len(graph.nodes), 12) and profile.shape == (len(graph.nodes), 20) and concat.shape[1] == 24
    assert np.allclose(profile.mean(0), 0, atol=1e-6)  # standardised token . position products
    assert model_graph(GcnSettings(model=3), token, graph.adjacency) is graph.adjacency
    similarity = model_graph(GcnSettings(model=1, similarity_k=4), token, graph.adjacency)
    assert (similarity != similarity.T).nnz == 0 and similarity.diagonal().sum() == 0
    assert (np.diff(similarity.indptr) >= 4).all()
    with pytest.raises(ArtifactError, match="positional embeddings"):
        node_features(table, np.zeros((20, 12)), graph.nodes, corpus, "waltz", "position-profile")


def test_test_edges_are_scored_once_at_the_restored_best_epoch(waltz, monkeypatch):
    corpus, graph = waltz
    calls = []
    original = gcn.test

    def counting(encoder, decoder, x, graph_, split):
        calls.append(split)
        return original(encoder, decoder, x, graph_, split)

    monkeypatch.setattr(gcn, "test", counting)
    result = _train(graph, corpus, GcnSettings(baselines=False, **TINY))
    train, val, test = result.split
    assert sum(c is test for c in calls) == 1 and sum(c is val for c in calls) == result.epochs_run
    assert all("test_auc" not in row for row in result.history)  # selection saw validation only
    assert result.selected_on == "same_field"  # the default --negatives same-field selects on its own kind
    assert result.best_epoch == max(result.history, key=lambda r: r["val_auc_same_field"])["epoch"]
    # the reported test score is that of the saved (best-epoch) weights
    settings = result.settings
    encoder = gcn.Encoder(result.in_dim, settings)
    decoder = gcn.LinkDecoder(settings.out_dim, settings.decoder)
    encoder.load_state_dict({k: v for k, v in result.state.items() if not k.startswith("decoder.")})
    decoder.load_state_dict({k[len("decoder."):]: v for k, v in result.state.items() if k.startswith("decoder.")})
    scores = original(encoder, decoder, train.x, train, test)
    assert tuple(round(v, 5) for v in scores["uniform"]) == (result.test_auc, result.test_ap)
    assert tuple(round(v, 5) for v in scores["same_field"]) == (result.test_auc_same_field, result.test_ap_same_field)


def test_baselines_score_the_same_test_edges_on_both_negative_sets(waltz):
    corpus, graph = waltz
    result = _train(graph, corpus, GcnSettings(**TINY))
    assert set(result.baselines) == {*HEURISTICS, "gcn_random_features", "mlp_embeddings"}
    for scores in result.baselines.values():
        assert set(scores) == {"auc", "ap", "auc_same_field", "ap_same_field"}
        assert all(0 <= v <= 1 for v in scores.values())
    train, _, test = result.split
    degree = np.bincount(train.edge_index[0].numpy(), minlength=train.num_nodes)  # training graph only
    for key, pairs, labels in (("auc", test.edge_label_index, test.edge_label),
                               ("auc_same_field", test.hard_label_index, test.hard_label)):
        pairs = pairs.numpy()
        expected = gcn.roc_auc(labels.numpy(), degree[pairs[0]] * degree[pairs[1]])
        assert result.baselines["degree_product"][key] == round(expected, 5)
    data = result.to_dict()
    assert data["baselines"] == result.baselines and "state" not in data and data["test_auc"] == result.test_auc
    assert {"test_auc_same_field", "test_ap_same_field", "val_auc_same_field", "selected_on"} <= set(data)


def test_same_field_negatives_match_each_positives_field_pair(waltz):
    corpus, graph = waltz
    data = gcn.to_data(np.zeros((len(graph.nodes), 2)), graph.undirected(), fields=graph.node_fields(corpus.config))
    train, val, test = gcn.split_edges(data, seed=1)
    every = {tuple(e) for e in data.edge_index.t().tolist()}
    for split in (val, test):
        pairs, labels = split.hard_label_index, split.hard_label
        positives, negatives = pairs[:, labels == 1], pairs[:, labels == 0]
        assert torch.equal(positives, split.edge_label_index[:, split.edge_label == 1])  # the same positives
        adjacency = (graph.undirected() > 0).toarray()
        possible = sum(any(w != u and not adjacency[u, w] for w in np.flatnonzero(data.field == data.field[v]))
                       or any(w != v and not adjacency[w, v] for w in np.flatnonzero(data.field == data.field[u]))
                       for u, v in positives.t().tolist())
        assert negatives.size(1) == possible  # a negative for every positive whose field pair has a non-edge
        assert not any(tuple(e) in every for e in negatives.t().tolist()) and (negatives[0] != negatives[1]).all()
        field = data.field
        pair_of = {(int(a), int(b)) for a, b in zip(field[positives[0]], field[positives[1]])}
        assert {(int(a), int(b)) for a, b in zip(field[negatives[0]], field[negatives[1]])} <= pair_of
    drawn = gcn.draw_negatives(train, train.edge_label_index.size(1), "same-field")
    known = {tuple(e) for e in train.target_index.t().tolist()}
    assert drawn.size(1) > 0 and not any(tuple(e) in known for e in drawn.t().tolist())
    uniform = gcn.draw_negatives(train, 50, "uniform")
    assert uniform.size(1) > 0 and not any(tuple(e) in known for e in uniform.t().tolist())


def test_training_on_uniform_negatives_selects_on_them(waltz):
    corpus, graph = waltz
    result = _train(graph, corpus, GcnSettings(baselines=False, negatives="uniform", **TINY))
    assert result.selected_on == "uniform"
    assert result.best_epoch == max(result.history, key=lambda r: r["val_auc"])["epoch"]


def test_models_1_and_2_predict_the_style_graph_not_their_own(waltz):
    """The similarity graph of the features carries the messages; the edges scored are the style graph's."""
    from musictl.transfer.features import model_graphs

    corpus, graph = waltz
    features = np.random.default_rng(0).normal(size=(len(graph.nodes), 8))
    settings = GcnSettings(model=1, similarity_k=4, baselines=False, **TINY)
    target, message = model_graphs(settings, features, graph.undirected())
    assert target is not message and (target != graph.undirected()).nnz == 0
    result = _train(graph, corpus, settings, features, message=message)
    train, _, test = result.split
    style_edges = {tuple(e) for e in gcn.to_data(features, target).edge_index.t().tolist()}
    positives = test.edge_label_index[:, test.edge_label == 1].t().tolist()
    assert all(tuple(e) in style_edges for e in positives)
    passing = {tuple(e) for e in train.edge_index.t().tolist()}
    assert passing == {tuple(e) for e in gcn.to_data(features, message).edge_index.t().tolist()}
    own, none = model_graphs(GcnSettings(model=1, similarity_k=4, predict="own"), features, graph.undirected())
    assert none is None and (own != message).nnz == 0  # the study's circular set-up, on request


def test_mlp_encoder_ignores_the_graph():
    settings = GcnSettings(**TINY)
    encoder = gcn.MlpEncoder(5, settings).eval()
    x = torch.randn(7, 5)
    one = encoder(x, torch.tensor([[0, 1], [1, 0]]))
    assert torch.equal(one, encoder(x, torch.tensor([[2, 3], [3, 2]]))) and one.shape == (7, settings.out_dim)


def test_similarity_graph_is_symmetric_knn():
    x = np.array([[1.0, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
    graph = gcn.similarity_graph(x, 1)
    assert isinstance(graph, sp.csr_matrix) and graph[0, 1] > 0 and graph[2, 3] > 0 and graph[0, 2] == 0


def test_the_same_seed_gives_the_same_scores(waltz):
    """The split, both negative sets and training are seeded (PyG's negative sampling uses Python's random too)."""
    corpus, graph = waltz
    first, second = (_train(graph, corpus, GcnSettings(**TINY)).to_dict() for _ in range(2))
    assert first == second
    assert _train(graph, corpus, GcnSettings(**{**TINY, "seed": 1})).to_dict() != first
