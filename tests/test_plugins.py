"""Plugins: declared parameters, the command-line options built from them, and a strategy
installed from another package through the `curate.strategies` entry-point group."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curate.errors import CurateError
from curate.plugins import Param, ParamError
from curate.strategies import STRATEGIES, make_strategy


# ----------------------------------------------------------------------------- declarations
@pytest.mark.parametrize(
    "param, given, expected",
    [
        (Param("k", int, 3, "h", minimum=1), "7", 7),
        (Param("k", int, 3, "h", minimum=1), 7, 7),
        (Param("k", int, None, "h"), "none", None),
        (Param("k", int, None, "h"), None, None),
        (Param("x", float, 0.5, "h", maximum=1), "0.25", 0.25),
        (Param("x", float, 0.5, "h"), 2, 2.0),
        (Param("b", bool, False, "h"), "yes", True),
        (Param("b", bool, False, "h"), False, False),
        (Param("m", str, "a", "h", choices=("a", "b")), "b", "b"),
    ],
)
def test_param_parses_command_line_and_yaml_values(param, given, expected):
    value = param.parse(given, "strategy t")
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "param, given, message",
    [
        (Param("k", int, 3, "h", minimum=1), "0", "--k '0' is below the minimum 1"),
        (Param("k", int, 3, "h"), "2.5", "--k '2.5' is not an integer"),
        (Param("k", int, 3, "h"), 2.5, "--k 2.5 is not an integer"),
        (Param("k", int, 3, "h"), True, "is not a number"),
        (Param("k", int, 3, "h"), "none", "needs a value"),
        (Param("x", float, 0.5, "h", maximum=1), "1.5", "above the maximum 1"),
        (Param("b", bool, False, "h"), "maybe", "is not true or false"),
        (Param("m", str, "a", "h", choices=("a", "b")), "c", "is not one of a, b"),
        (Param("m", str, "a", "h"), 3, "is not a string"),
    ],
)
def test_param_rejects_bad_values_naming_the_option(param, given, message):
    with pytest.raises(ParamError, match=message) as err:
        param.parse(given, "strategy t")
    assert str(err.value).startswith("strategy t: --")


def test_a_declaration_with_a_bad_default_fails_when_the_plugin_is_written():
    with pytest.raises(ParamError, match="below the minimum"):
        Param("k", int, 0, "h", minimum=1)
    with pytest.raises(ValueError, match="must match"):
        Param("Bad Name", int, 1, "h")


def test_strategy_params_are_checked_and_only_recorded_ones_reach_the_manifest():
    strategy = make_strategy("kcenter", {"metric": "cosine", "whiten": "8"}, device="cpu")
    assert strategy.options == {"metric": "cosine", "whiten": 8}
    assert strategy.params() == {"metric": "cosine", "whiten": 8} and strategy.device == "cpu"
    with pytest.raises(ParamError, match=r"no parameter --metrc \(its parameters: --metric"):
        make_strategy("kcenter", {"metrc": "cosine"})
    with pytest.raises(ParamError, match=r"strategy random has no parameter --metric .*none"):
        make_strategy("random", {"metric": "cosine"})


def test_command_line_options_become_plugin_values():
    from curate.cli.plugin_options import parse_plugin_options

    class Flagged:
        parameters = (Param("fast", bool, False, "h"), Param("top_k", int, 1, "h"))

    parse = parse_plugin_options
    assert parse(["--top-k", "3", "--fast"], Flagged) == {"top_k": "3", "fast": True}
    assert parse(["--top-k=-2", "--no-fast"], Flagged) == {"top_k": "-2", "fast": False}
    assert parse(["--unknown", "v"], Flagged) == {"unknown": "v"}  # the declaration refuses it
    with pytest.raises(Exception, match="unexpected argument 'stray'"):
        parse(["stray"], Flagged)
    with pytest.raises(Exception, match="--top-k needs a value"):
        parse(["--top-k"], Flagged)


# ----------------------------------------------------------------------------- entry points
@pytest.fixture
def installed(plugin_site, monkeypatch) -> Path:
    monkeypatch.syspath_prepend(str(plugin_site))
    return plugin_site


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory, sample_pool) -> Path:
    """The sample pool, no embeddings (conftest's `pool_db` has vectors; these tests embed)."""
    from curate.ingest import ingest
    from curate.store import Store

    db = tmp_path_factory.mktemp("plugins") / "db"
    ingest(Store(db), [str(sample_pool)])
    return db


def test_builtins_do_not_list_an_uninstalled_plugin():
    assert "stride" not in STRATEGIES.names()


def test_installed_plugin_selects_from_the_cli_with_its_own_options(
    installed, sample_db, tmp_path, cli
):
    # after the built-ins, by name
    assert STRATEGIES.names()[-4:] == ["broken", "entropy-top", "stride", "vowels"]
    args = ["select", "--db", str(sample_db), "--strategy", "stride", "--budget", "5"]
    code, out, err = cli(*args, "--step", "3", "--offset", "1", "--out", str(tmp_path / "s"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    from curate.store import Store

    ids = Store(sample_db).read_pool(["id"])["id"].to_pylist()
    assert [p["id"] for p in manifest["picks"]] == [ids[i] for i in (1, 4, 7, 10, 13)]
    assert manifest["strategy"] == "stride"
    assert manifest["params"] == {"step": 3, "offset": 1, "added": 5}

    code, out, err = cli("select", "--help")
    assert code == 0 and "stride: every step-th unchosen row" in " ".join(out.split())
    assert "--offset (int ≥ 0, default 0)" in out

    code, _, err = cli(*args, "--step", "0")
    assert code == ParamError.exit_code
    assert err.strip() == "error: strategy stride: --step '0' is below the minimum 1"


def test_a_plugin_that_fails_to_load_is_one_line_naming_it(installed, sample_db, cli):
    code, out, err = cli("select", "--db", str(sample_db), "--strategy", "broken", "--budget", "2")
    assert code == CurateError.exit_code and out == ""
    assert err.startswith("error: strategy plugin 'broken' from curate-stride-plugin failed")
    assert len(err.strip().splitlines()) == 1


def test_installed_plugin_validates_in_params_yaml(installed):
    import yaml

    from curate.scaffold import pipeline_files, validate_params

    params = yaml.safe_load(pipeline_files("default")["params.yaml"])
    params.update(strategy="stride", strategy_params={"step": 4})
    validate_params(params, "params.yaml")
    params["strategy_params"] = {"step": "x"}
    with pytest.raises(CurateError, match="params.yaml: strategy_params: .*--step 'x' is not an"):
        validate_params(params, "params.yaml")


def test_plugin_picks_are_the_declared_rule_for_any_parent(installed):
    from curate.strategies import PoolArrays

    strategy = make_strategy("stride", {"step": 2})
    picks = strategy.select(PoolArrays(10), np.array([0, 3], np.int64), 3, seed=0).indices
    assert picks.tolist() == [1, 4, 6]


def test_an_installed_embedder_plugin_embeds_and_selects_from_the_cli(
    installed, sample_db, tmp_path, cli
):
    from curate.store import Store

    db = str(sample_db)
    code, out, err = cli("embed", "--db", db, "--embedder", "chars:2", "--name", "c", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["embedder"] == "chars:2" and report["dim"] == 26
    vectors = Store(sample_db).load_vectors("c")
    first = Store(sample_db).read_pool(["instruction"])["instruction"][0].as_py().lower()
    assert vectors.matrix[0, 0] == 2 * first.count("a") and vectors.matrix[
        0, 25
    ] == 2 * first.count("z")
    code, out, err = cli(
        "select",
        "--db",
        db,
        "--embeddings",
        "c",
        "--budget",
        "4",
        "--json",
        "--out",
        str(tmp_path / "k"),
    )
    assert code == 0, err
    assert json.loads(out)["embeddings"] == {"name": "c", "fingerprint": vectors.fingerprint}
    code, out, _ = cli("embed", "--help")
    assert "chars: letter counts of the instruction (a test plugin)" in " ".join(out.split())


# ----------------------------------------------------------------------------- score columns
def test_a_plugin_strategy_gets_exactly_the_score_columns_it_declares(
    installed, pool_db, tmp_path, cli
):
    """`entropy-top` declares `reads_scores = ("entropy",)` and refuses any other column: on
    a table holding all six `lm:` scores it gets that one; on one without, a single line."""
    from curate.store import Store

    db, _, scores = pool_db
    args = ["select", "--db", str(db), "--strategy", "entropy-top", "--budget", "5"]
    code, _, err = cli(*args, "--embeddings", "e", "--out", str(tmp_path / "s"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    ids = Store(db).read_pool(["id"])["id"].to_pylist()
    best = sorted(range(len(ids)), key=lambda i: (-scores["entropy"][i], i))[:5]
    assert [p["id"] for p in manifest["picks"]] == [ids[i] for i in best]

    code, out, err = cli(*args, "--embeddings", "plain", "--out", str(tmp_path / "t"))
    assert code == CurateError.exit_code and out == "" and len(err.strip().splitlines()) == 1
    assert f"embeddings 'plain' (table emb_plain in {db}) have no 'entropy' score" in err
    assert not (tmp_path / "t").exists()


def test_a_plugin_embedders_score_columns_reach_the_strategy_that_reads_them(
    installed, sample_db, tmp_path, cli
):
    """`chars:` declares `score_columns = ("vowel_share",)`: embedding for `vowels` (which
    reads it) stores that column and nothing else; embedding for `entropy-top` stops before
    writing anything, naming the column chars: does not compute."""
    from curate.store import Store, score_columns

    store, db = Store(sample_db), str(sample_db)
    embed = ["embed", "--db", db, "--embedder", "chars:1", "--name", "v"]
    code, out, err = cli(*embed, "--for-strategy", "entropy-top")
    assert code == CurateError.exit_code and len(err.strip().splitlines()) == 1
    assert "strategy 'entropy-top' reads the 'entropy' score, which chars:1 does not compute (it computes vowel_share)" in err  # fmt: skip
    assert store.embeddings_schema("v") is None  # nothing written

    code, _, err = cli(*embed, "--for-strategy", "vowels", "--json")
    assert code == 0, err
    assert score_columns(store.embeddings_schema("v")) == ("vowel_share",)
    share = store.load_vectors("v", scores=("vowel_share",)).scores["vowel_share"]
    for i, text in enumerate(store.read_pool(["instruction"])["instruction"].to_pylist()):
        letters = [c for c in text.lower() if "a" <= c <= "z"]
        expected = sum(c in "aeiou" for c in letters) / max(len(letters), 1)
        assert share[i] == pytest.approx(expected, rel=1e-6), i

    out_dir = tmp_path / "picked"
    code, _, err = cli("select", "--db", db, "--strategy", "vowels", "--embeddings", "v",
                       "--budget", "4", "--out", str(out_dir))  # fmt: skip
    assert code == 0, err
    picks = json.loads((out_dir / "manifest.json").read_text())["picks"]
    best = sorted(range(len(share)), key=lambda i: (-share[i], i))[:4]
    ids = store.read_pool(["id"])["id"].to_pylist()
    assert [p["id"] for p in picks] == [ids[i] for i in best]
    assert [p["score"] for p in picks] == pytest.approx([float(share[i]) for i in best])
