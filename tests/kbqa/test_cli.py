"""`paperzoo kbqa train | ask` end to end on Nations with a tiny random LLM (the stages' wiring, the saved folder,
progress, errors); the real LLM's figures are benchmarks/kbqa.py's."""

from __future__ import annotations

import json

import pytest

from paperzoo.cli import main

from ..tiny_llm import tiny_causal_lm


@pytest.fixture(scope="module")
def llm_folder(tmp_path_factory):
    model, tokenizer = tiny_causal_lm()
    folder = tmp_path_factory.mktemp("llm") / "tiny-llm"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, llm_folder):
    root = tmp_path_factory.mktemp("kbqa-cli")
    pool = root / "pool.txt"
    pool.write_text("Which countries have an embassy in Cuba?\nDoes the US export to the UK?\n")
    output = root / "parser"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PAPERZOO_CACHE", str(root / "cache"))  # the LLM's answers: not in the user's cache
        code = main(["kbqa", "train", "--kb", "nations", "--unlabelled", str(pool), "--output", str(output),
                     "--llm", str(llm_folder), "--per-template", "2", "--rounds", "1", "--filters", "error",
                     "--steps", "3", "--student-steps", "2", "--d-model", "32", "--layers", "1", "--quiet"])
    assert list((root / "cache" / "llm-generations").glob("*.jsonl"))  # translations cached for a rerun
    return code, output


def test_train_writes_a_parser_folder_with_its_record(trained, capsys):
    code, output = trained
    assert code == 0
    record = json.loads((output / "flexkbqa.json").read_text())
    assert record["kb"] == "nations" and len(record["seeds"]) <= 25
    assert record["config"]["rounds"] == 1 and record["config"]["filters"] == ["error"]
    assert record["report"]["programs"] > 0 and len(record["report"]["rounds"]) == 1
    assert record["report"]["rounds"][0]["pool"] == 2
    assert record["report"]["teacher_steps"] == 3 and record["report"]["rounds"][0]["student_steps"] == 2
    assert (output / "config.json").is_file() and (output / "tokenizer.json").is_file()


def test_ask_prints_one_json_line_per_question(trained, capsys):
    _, output = trained
    capsys.readouterr()
    assert main(["kbqa", "ask", str(output), "Which countries have an embassy in Cuba?", "Who is there?",
                 "--no-fallback", "--num-beams", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["question"] for line in lines] == ["Which countries have an embassy in Cuba?", "Who is there?"]
    for line in lines:
        assert set(line) == {"question", "answer", "labels", "program", "source"}
        assert line["source"] in ("kb", None)


def test_usage_errors_name_the_file_and_line(tmp_path, llm_folder, capsys, monkeypatch):
    monkeypatch.setenv("PAPERZOO_CACHE", str(tmp_path / "cache"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert main(["kbqa", "train", "--kb", "nations", "--unlabelled", str(empty), "--output",
                 str(tmp_path / "out"), "--llm", str(llm_folder)]) == 2
    assert "no questions" in capsys.readouterr().err
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"question": "q?", "sparql": "SELECT ?x WHERE { e:usa r:embassy"}\n')
    assert main(["kbqa", "train", "--kb", "nations", "--seeds", str(seeds), "--rounds", "0", "--output",
                 str(tmp_path / "out"), "--llm", str(llm_folder)]) == 2
    assert "seeds.jsonl:1: the seed program does not run" in capsys.readouterr().err
    bad_kb = tmp_path / "kb.tsv"
    bad_kb.write_text("usa\tembassy\tuk\nusa\tembassy\n")
    assert main(["kbqa", "train", "--kb", str(bad_kb), "--rounds", "0", "--output", str(tmp_path / "out")]) == 2
    assert "kb.tsv:2: expected 3 tab-separated fields" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing half-written
