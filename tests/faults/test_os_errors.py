"""How an OS error becomes one line naming its path, whichever library raised it."""

from __future__ import annotations

import errno

import pytest

from curate.cli import os_error_line
from curate.errors import InvalidInputError
from curate.files import errno_of, naming_path

LANCE = (
    "lance error: LanceError(IO): No space left on device (os error 28), "
    "lance-file-13.0.0/src/writer/structural.rs:191:9"
)
SAFETENSORS = "Error while serializing: I/O error: No space left on device (os error 28)"
RUST_DEBUG = 'IoError(Os { code: 13, kind: PermissionDenied, message: "Permission denied" })'
ARROW = "[Errno 30] Error writing bytes to file. Detail: [errno 30] Read-only file system"


@pytest.mark.parametrize(
    ("text", "code"),
    [(LANCE, errno.ENOSPC), (SAFETENSORS, errno.ENOSPC), (RUST_DEBUG, errno.EACCES),
     (ARROW, errno.EROFS), ("write failed: No space left on device", errno.ENOSPC),
     ("shape mismatch (2, 3)", None)],
)  # fmt: skip
def test_errno_of_reads_the_number_from_the_text(text, code):
    assert errno_of(RuntimeError(text)) == code


def test_naming_path_turns_a_lance_error_into_one_line_naming_the_folder(tmp_path):
    with pytest.raises(OSError) as caught, naming_path(tmp_path / "db"):
        raise RuntimeError(LANCE)
    assert caught.value.errno == errno.ENOSPC
    assert os_error_line(caught.value) == (
        f"{tmp_path / 'db'}: the disk is full: free space and rerun (nothing was changed)"
    )


def test_naming_path_keeps_errors_that_already_say_where_or_are_not_os_errors(tmp_path):
    with pytest.raises(PermissionError) as caught, naming_path(tmp_path):
        (tmp_path / "x").write_text("")
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x"))
    assert caught.value.filename == str(tmp_path / "x")
    with pytest.raises(InvalidInputError), naming_path(tmp_path):
        raise InvalidInputError("a.jsonl", 3, "quotes [Errno 2] from a reader")
    with pytest.raises(ValueError), naming_path(tmp_path):
        raise ValueError("not an OS error")
