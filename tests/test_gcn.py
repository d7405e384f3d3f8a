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
from musictl.transfer.settings import MODELS, GcnSettings

TINY = {"epochs": 6, "hidden": 16, "out_dim": 8, "patience": 3}


@pytest.fixture(scope="module")
def waltz(tokens_dir):
    corpus = TokenCorpus.open(tokens_dir)
    return corpus, build_graph(corpus, corpus.select(style="waltz"), window=2)


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
    _, graph = waltz
    calls = []
    original = gcn.test

    def counting(encoder, decoder, x, graph_, split):
        calls.append(split)
        return original(encoder, decoder, x, graph_, split)

    monkeypatch.setattr(gcn, "test", counting)
    features = np.random.default_rng(0).normal(size=(len(graph.nodes), 8))
    result = gcn.train_link_prediction(features, graph.adjacency, GcnSettings(baselines=False, **TINY))
    train, val, test = result.split
    assert sum(c is test for c in calls) == 1 and sum(c is val for c in calls) == result.epochs_run
    assert all("test_auc" not in row for row in result.history)  # selection saw validation only
    assert result.best_epoch == max(result.history, key=lambda r: r["val_auc"])["epoch"]
    # the reported test score is that of the saved (best-epoch) weights
    settings = result.settings
    encoder = gcn.Encoder(result.in_dim, settings)
    decoder = gcn.LinkDecoder(settings.out_dim, settings.decoder)
    encoder.load_state_dict({k: v for k, v in result.state.items() if not k.startswith("decoder.")})
    decoder.load_state_dict({k[len("decoder."):]: v for k, v in result.state.items() if k.startswith("decoder.")})
    auc, ap = original(encoder, decoder, train.x, train, test)
    assert (round(auc, 5), round(ap, 5)) == (result.test_auc, result.test_ap)


def test_baselines_score_the_same_test_edges(waltz):
    _, graph = waltz
    features = np.random.default_rng(0).normal(size=(len(graph.nodes), 8))
    result = gcn.train_link_prediction(features, graph.adjacency, GcnSettings(**TINY))
    assert set(result.baselines) == {*HEURISTICS, "gcn_random_features", "mlp_embeddings"}
    assert all(0 <= s["auc"] <= 1 and 0 <= s["ap"] <= 1 for s in result.baselines.values())
    train, _, test = result.split
    pairs = test.edge_label_index.numpy()
    degree = np.bincount(train.edge_index[0].numpy(), minlength=train.num_nodes)  # training graph only
    expected = gcn.roc_auc(test.edge_label.numpy(), degree[pairs[0]] * degree[pairs[1]])
    assert result.baselines["degree_product"]["auc"] == round(expected, 5)
    data = result.to_dict()
    assert data["baselines"] == result.baselines and "state" not in data and data["test_auc"] == result.test_auc


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
