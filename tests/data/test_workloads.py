"""Prompt loaders and pair prompt formats (gelato.data.workloads)."""

from __future__ import annotations

import gzip
import json

import pytest

from gelato.data import workloads as wl
from gelato.data.workloads import (
    SPEC_BENCH_CATEGORIES,
    DataFileNotFoundError,
    Prompt,
    format_for_pair,
    load_gsm8k,
    load_humaneval,
    load_spec_bench,
)


def _real_data_dir():
    try:
        wl.data_file("gsm8k_test.jsonl")
    except DataFileNotFoundError:
        return None
    return wl.resolve_data_dir()


REAL = _real_data_dir()
needs_real = pytest.mark.skipif(REAL is None, reason="shared/data not found (set GELATO_DATA_DIR to run)")


@pytest.fixture
def fake_data(tmp_path):
    rows = [{"question": f"Q{i} has 2 apples?", "answer": f"2+{i} = <<2+{i}={2 + i}>>{2 + i}\n#### {2 + i}"}
            for i in range(5)]
    for split in ("train", "test"):
        (tmp_path / f"gsm8k_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sb = []
    for j, cat in enumerate(SPEC_BENCH_CATEGORIES):
        for k in range(3):
            sb.append({"question_id": 100 * j + k, "category": cat, "turns": [f"{cat} first {k}", "second turn"]})
    (tmp_path / "spec_bench_question.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sb))
    he = [{"task_id": f"HumanEval/{i}", "prompt": f"def f{i}(x):\n    \"\"\"doc\"\"\"\n",
           "entry_point": f"f{i}", "canonical_solution": "    return x\n", "test": "def check(c): pass\n"}
          for i in range(4)]
    with gzip.open(tmp_path / "HumanEval.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in he)
    return tmp_path


def test_gsm8k_loader_strips_calculator_annotations(fake_data):
    ps = load_gsm8k("test", fake_data, limit=3)
    assert [p.id for p in ps] == ["gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-2"]
    assert ps[1].text == "Q1 has 2 apples?"
    assert "<<" not in ps[1].reference and ps[1].reference.endswith("#### 3")
    assert ps[1].meta["final_answer"] == "3"
    assert len(load_gsm8k("train", fake_data)) == 5
    with pytest.raises(ValueError):
        load_gsm8k("validation", fake_data)


def test_spec_bench_loader_first_turn_categories_and_limit(fake_data):
    all_ = load_spec_bench(fake_data)
    assert len(all_) == 3 * 13 and {p.category for p in all_} == set(SPEC_BENCH_CATEGORIES)
    assert all("second turn" not in p.text for p in all_)
    some = load_spec_bench(fake_data, categories=["qa", "rag"], limit=2)
    assert [p.category for p in some] == ["qa", "qa", "rag", "rag"]
    assert some[0].text == "qa first 0"
    with pytest.raises(ValueError, match="unknown Spec-Bench categories"):
        load_spec_bench(fake_data, categories=["poetry"])


def test_humaneval_loader_reads_gzip(fake_data):
    ps = load_humaneval(fake_data, limit=2)
    assert [p.id for p in ps] == ["HumanEval/0", "HumanEval/1"]
    assert ps[0].text.startswith("def f0(x):") and ps[0].reference == "    return x\n"
    assert ps[0].meta["entry_point"] == "f0"


@pytest.mark.parametrize("loader, name", [
    (lambda d: load_gsm8k("train", d), "gsm8k_train.jsonl"),
    (lambda d: load_spec_bench(d), "spec_bench_question.jsonl"),
    (lambda d: load_humaneval(d), "HumanEval.jsonl.gz"),
])
def test_missing_file_error_says_where_and_what(tmp_path, loader, name):
    with pytest.raises(DataFileNotFoundError) as err:
        loader(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / name) in msg and "SOURCES.md" in msg
    assert wl.DATA_FILES[name][0] in msg  # e.g. "GSM8K training split"


def test_data_dir_env_var(monkeypatch, fake_data):
    monkeypatch.setenv(wl.DATA_DIR_ENV, str(fake_data))
    assert wl.resolve_data_dir() == fake_data
    assert len(load_gsm8k("test")) == 5


def test_format_for_pair():
    p = Prompt(id="x", text="  How many?  ", category="gsm8k")
    assert format_for_pair(p, "gsm8k") == "Question: How many?\nAnswer:"
    # the training document is the prompt followed by the answer
    assert wl.gsm8k_document("How many?", "It is 2 = <<1+1=2>>2.\n#### 2").startswith(format_for_pair(p, "gsm8k") + " ")
    code = Prompt(id="h", text="def f():\n", category="humaneval")
    assert format_for_pair(code, "code") == "def f():\n"
    assert format_for_pair(Prompt(id="q", text="Sort a list", category="coding"), "code") == '"""Sort a list"""\n'
    assert format_for_pair(p, "Qwen2.5-7B") == p.text


@needs_real
def test_real_files_have_expected_sizes():
    assert len(load_gsm8k("test", REAL)) == 1319
    assert len(load_gsm8k("train", REAL, limit=10)) == 10
    sb = load_spec_bench(REAL)
    assert len(sb) == 480 and {p.category for p in sb} == set(SPEC_BENCH_CATEGORIES)
    assert len(load_spec_bench(REAL, limit=1)) == 13
    he = load_humaneval(REAL)
    assert len(he) == 164 and he[0].id == "HumanEval/0"
