"""An error in a JSON array names the record (its index, and its id when it has one), not
line 1 of a one-line export; a pretty-printed array keeps its line too."""

from __future__ import annotations

import json

import pytest

from curate.errors import InvalidInputError
from curate.ingest import ingest

GOOD = {"instruction": "a", "output": "b"}
TURNS = [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]


@pytest.mark.parametrize(
    "records, indent, where, reason",
    [
        ([GOOD, GOOD | {"instruction": "c"}, {"instruction": "x"}], None, "record [2]", "'output'"),
        (
            [GOOD, {"id": "conv-7", "conversations": TURNS[:1] + [{"from": "gpt", "value": 4}]}],
            None,
            'record [1] (id "conv-7")',
            "must be a string",
        ),
        ([GOOD, {"id": 12, "conversations": []}], None, 'record [1] (id "12")', "non-empty"),
        ([GOOD, {"instruction": "x"}], 1, ":6: record [1]", "'output'"),
    ],
)
def test_error_names_the_record_of_a_json_array(store, tmp_path, records, indent, where, reason):
    src = tmp_path / "pool.json"
    src.write_text(json.dumps(records, indent=indent))
    with pytest.raises(InvalidInputError) as err:
        ingest(store, [str(src)])
    message = str(err.value)
    prefix = f"{src}{where}: " if where.startswith(":") else f"{src}: {where}: "
    assert message.startswith(prefix) and reason in message, message


def test_malformed_element_and_rejects_name_the_index(store, tmp_path, cli):
    src = tmp_path / "pool.json"
    src.write_text('[{"instruction": "a", "output": "b"}, {"instruction": "x" "output": "y"}]')
    with pytest.raises(InvalidInputError, match=r"pool\.json: record \[1\]: malformed JSON"):
        ingest(store, [str(src)])

    src.write_text(json.dumps([GOOD, {"id": "q2", "instruction": "x"}, GOOD | {"output": "c"}]))
    done = cli("ingest", src, "--db", store.path, "--skip-invalid", "--json")
    assert done.code == 0, done.err
    (reject,) = [json.loads(line) for line in open(done.json()["rejects_path"])]
    assert (reject["line"], reject["index"], reject["record"]["id"]) == (1, 1, "q2")
    failed = cli("ingest", src, "--db", store.path)
    assert failed.code != 0
    assert failed.err.startswith(f'error: {src}: record [1] (id "q2"): '), failed.err
