"""Class names as people type them (featviz.class_names), on a tiny list and on the real
EfficientNet-Lite0 labels, through ModelSpec.label_index, the SPEC grammar and the CLI."""

from __future__ import annotations

import importlib

import pytest

from featviz import class_names, objectives
from featviz.cli import main, spec_grammar
from featviz.model import UnknownLabelError

TINY = (
  "tench",
  "goldfish",
  "golden retriever",
  "flat-coated retriever",
  "jack-o'-lantern",
  "cardigan",
  "Cardigan",
  "crane",
  "crane",
)


@pytest.fixture(scope="module")
def effnet():
  """EfficientNet-Lite0's spec (its 1000 ImageNet class names), without loading weights."""
  return importlib.import_module("featviz.zoo.efficientnet_lite0").spec()


@pytest.mark.parametrize(
  "query,index",
  [
    ("goldfish", 1),
    ("Goldfish", 1),
    ("GOLDFISH", 1),
    ("gold fish", 1),
    ("golden retriever", 2),
    ("golden_retriever", 2),
    ("Golden_Retriever", 2),
    ("goldenretriever", 2),
    ("  golden   retriever ", 2),
    ("flat-coated retriever", 3),
    ("flat coated retriever", 3),
    ("flat_coated_retriever", 3),
    ("jack-o'-lantern", 4),
    ("jack o lantern", 4),
    ("cardigan", 5),
    ("Cardigan", 6),  # an exact spelling wins over a case-folded match
  ],
)
def test_resolve_any_case_spaces_or_underscores(query, index):
  assert class_names.resolve(TINY, query) == index


def test_unknown_name_suggests_the_closest():
  with pytest.raises(UnknownLabelError, match="did you mean 'goldfish'") as err:
    class_names.resolve(TINY, "goldfsh", model="tiny")
  assert err.value.suggestions[0] == 1
  assert "featviz zoo labels tiny --grep WORD" in str(err.value)
  assert "0-8" in str(err.value)


def test_a_word_of_several_names_suggests_them_all():
  with pytest.raises(UnknownLabelError) as err:
    class_names.resolve(TINY, "retriever")
  assert err.value.suggestions == [2, 3]


def test_ambiguous_names_list_their_indices():
  for query in ("crane", "CARDIGAN"):
    with pytest.raises(UnknownLabelError, match="ambiguous") as err:
      class_names.resolve(TINY, query)
    assert len(err.value.suggestions) == 2


def test_nothing_close_and_no_labels():
  with pytest.raises(UnknownLabelError, match=r"unknown class name 'xyzzy'\. Pass an index"):
    class_names.resolve(TINY, "xyzzy")
  with pytest.raises(UnknownLabelError, match="no class names for m; pass a class index 0-9"):
    class_names.resolve((), "goldfish", model="m", num_classes=10)


def test_search_matches_like_resolve():
  assert class_names.search(TINY, "RETRIEVER") == [2, 3]
  assert class_names.search(TINY, "golden_retr") == [2]
  assert class_names.search(TINY, "") == list(range(len(TINY)))


@pytest.mark.parametrize(
  "query,index",
  [
    ("goldfish", 1),
    ("Goldfish", 1),
    ("golden_retriever", 207),
    ("golden retriever", 207),
    ("Labrador Retriever", 208),
    ("great_white_shark", 2),
    ("jack-o'-lantern", 607),
    ("jack o lantern", 607),
    ("carpenter's kit", 477),
    ("cardigan", 474),
    ("Cardigan", 264),
  ],
)
def test_efficientnet_lite0_labels(effnet, query, index):
  assert effnet.label_index(query) == index


def test_efficientnet_lite0_suggestions(effnet):
  with pytest.raises(UnknownLabelError, match="did you mean 'goldfish'") as err:
    effnet.label_index("goldfsh")
  assert "featviz zoo labels efficientnet_lite0" in str(err.value)
  with pytest.raises(UnknownLabelError, match="ambiguous.*134 'crane', 517 'crane'"):
    effnet.label_index("crane")


@pytest.mark.parametrize(
  "spec",
  [
    "logit:Goldfish",
    "logit:golden_retriever",
    "logit:golden retriever",
    'logit:"golden retriever"',
    "logit:'Golden Retriever'",
  ],
)
def test_spec_grammar_names_reach_the_model(effnet, spec):
  objective = spec_grammar.parse(spec).bind(effnet, 1)
  assert isinstance(objective, objectives.ClassLogit)
  assert int(objective.index[0]) in (1, 207)


@pytest.mark.parametrize(
  "text,labels",
  [
    ("logit:golden retriever", ["logit:golden retriever"]),
    ("logit:flat-coated retriever", ["logit:flat-coated retriever"]),
    ("logit:jack-o'-lantern", ["logit:jack-o'-lantern"]),
    ("logit:goldfish-logit:tench", ["logit:goldfish - logit:tench"]),  # "-" before LAYER: subtracts
    ("logit:goldfish-0.5*logit:tench", ["logit:goldfish - 0.5*logit:tench"]),
    ("logit:golden retriever + 0.5*block5:3", ["logit:golden retriever + 0.5*block5:3"]),
  ],
)
def test_spec_grammar_names_with_spaces_and_hyphens(text, labels):
  assert spec_grammar.parse(text).labels(1) == labels


@pytest.mark.parametrize("text", ["logit:tench block5:3", "logit:-x", "logit:"])
def test_spec_grammar_still_rejects(text):
  with pytest.raises(spec_grammar.SpecError, match="grammar"):
    spec_grammar.parse(text)


def test_cli_zoo_labels(capsys):
  assert main(["zoo", "labels", "efficientnet_lite0", "--grep", "Retriever"]) == 0
  out = capsys.readouterr().out.splitlines()
  assert out[2].split(None, 1) == ["207", "golden retriever"]
  assert len(out) == 5
  assert main(["zoo", "labels", "efficientnet_lite0"]) == 0
  out = capsys.readouterr().out.splitlines()
  assert len(out) == 1000 and out[1].split(None, 1) == ["1", "goldfish"]


def test_cli_zoo_labels_errors(capsys):
  assert main(["zoo", "labels", "efficientnet_lite0", "--grep", "goldfsh"]) == 2
  assert "closest: 1 'goldfish'" in capsys.readouterr().err
  assert main(["zoo", "labels", "inceptionv1"]) == 2  # its class names are not shipped
  assert "by index (logit:0 to logit:1007)" in capsys.readouterr().err


def test_cli_unknown_name_exits_2_with_suggestions(capsys, tmp_path):
  out = tmp_path / "x.png"
  code = main(["render", "efficientnet_lite0", "logit:goldfsh", "--steps", "1", "--out", str(out)])
  assert code == 2
  assert "did you mean 'goldfish'" in capsys.readouterr().err
  assert not out.exists()
