"""The library store on SQLite and PostgreSQL: what a workspace sees (its own libraries and
those shared with it, by role), documents claimed by one processor at a time under a lease
taken over once it lapses, chunks stored with their usage record once, expiry; and the
text extraction and chunking that processing uses."""

import os
import uuid
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import text

from alize.errors import InvalidRequest
from alize.services.document_text import UnreadableDocument, extract, kind_of, split
from alize.store import accounts, vectors
from alize.store import libraries as store
from alize.store.accounts import NewKey, utcnow
from alize.store.db import Database
from alize.store.libraries import Denied, Missing
from alize.store.tables import LibraryDocument
from alize.store.usage import Usage
from tests.databases import postgres_database
from tests.platform_helpers import usage_rows
from tests.test_libraries import PASS, SOUP, pdf


@pytest.fixture
def keys(db):
    accounts.create_workspace(db, "lib-a")
    accounts.create_workspace(db, "lib-b")
    a, _ = accounts.create_key(db, NewKey("a", workspace="lib-a"))
    b, _ = accounts.create_key(db, NewKey("b", workspace="lib-b"))
    return a, b


def add_document(db, key, library_id: str, created_ago: timedelta = timedelta(0)) -> str:
    row = LibraryDocument(id=str(uuid.uuid4()), library_id=library_id, key_id=key.id, name="d.md",
                          mime_type="text/markdown", extension="md", size=3, sha256="0" * 64, status="todo", tokens=0,
                          created_at=utcnow() - created_ago)
    return store.add_document(db, key.workspace.id, row).id


def test_a_workspace_sees_its_libraries_and_those_shared_with_it_by_role(db, keys):
    a, b = keys
    now = utcnow()
    mine = store.create(db, a.workspace.id, str(uuid.uuid4()), "Mine", None, None, now)
    with pytest.raises(Missing):
        store.get(db, b.workspace.id, mine.id)
    assert store.visible(db, b.workspace.id, None, 0, 10) == ([], 0)
    with pytest.raises(Missing):
        store.share(db, b.workspace.id, mine.id, b.workspace.id, "Editor")  # not theirs to share

    store.share(db, a.workspace.id, mine.id, b.workspace.id, "Viewer")
    seen, total = store.visible(db, b.workspace.id, "MIN", 0, 10)
    assert total == 1 and seen[0].role == "Viewer"
    with pytest.raises(Denied):
        add_document(db, b, mine.id)
    with pytest.raises(Denied):
        store.change(db, b.workspace.id, mine.id, {"name": "Ours"}, now)
    store.share(db, a.workspace.id, mine.id, b.workspace.id, "Editor")
    add_document(db, b, mine.id)
    with pytest.raises(Denied):
        store.remove(db, b.workspace.id, mine.id)
    assert store.shares(db, a.workspace.id, mine.id) == [(a.workspace.id, "Owner"), (b.workspace.id, "Editor")]
    store.share(db, a.workspace.id, mine.id, b.workspace.id, None)
    with pytest.raises(Missing):
        store.get(db, b.workspace.id, mine.id)
    assert store.chunks(db, b.workspace.id, [mine.id]) == []  # an agent of b's finds nothing now
    record, documents = store.remove(db, a.workspace.id, mine.id)
    assert record.documents == 1 and len(documents) == 1


def test_a_document_is_processed_by_one_server_at_a_time_and_billed_once(db, keys, db_url):
    a, _ = keys
    now = utcnow()
    library = store.create(db, a.workspace.id, str(uuid.uuid4()), "L", None, None, now)
    older = add_document(db, a, library.id, timedelta(seconds=5))
    newer = add_document(db, a, library.id)
    lease = now + timedelta(minutes=10)
    assert store.claim(db, "a", now, lease).id == older  # oldest first
    assert store.claim(db, "a", now, lease).id == newer
    assert store.claim(db, "b", now, lease) is None  # both held by a
    assert store.release(db, "a") == 2  # a restarts (or stops): both are given back
    assert store.claim(db, "b", now, lease).id == older
    assert store.claim(db, "a", now, lease).id == newer

    later = now + timedelta(minutes=11)  # a died: its lease lapsed
    second_lease = later + timedelta(minutes=10)
    assert store.claim(db, "b", later, second_lease).id == older
    usage = Usage("doc-" + older, later, a.workspace.id, a.id, "mistral-embed", "libraries", 200, 7, 0)
    assert not store.finish(db, older, lease, "text", None, [("text", b"\0" * 8)], usage)  # the dead one's lease
    assert store.finish(db, older, second_lease, "text", None, [("text", b"\0" * 8)], usage)
    assert store.document(db, a.workspace.id, library.id, older).status == "done"
    assert store.document(db, a.workspace.id, library.id, older).tokens == 7
    assert [r.id for r in usage_rows(db_url)] == ["doc-" + older]
    assert [c.text for c in store.chunks(db, a.workspace.id, [library.id])] == ["text"]

    store.set_status(db, newer, lease, "waiting_for_capacity", "over the limit", later, now)
    assert store.claim(db, "a", now, lease) is None  # waits until its retry time
    assert store.claim(db, "b", later + timedelta(seconds=1), second_lease).id == newer

    store.change_document(db, a.workspace.id, library.id, older, {"expires_at": now - timedelta(seconds=1)})
    with pytest.raises(Missing):  # gone for readers at once
        store.document(db, a.workspace.id, library.id, older)
    assert store.documents(db, a.workspace.id, library.id, None, 0, 10, "created_at", True)[1] == 1
    assert store.get(db, a.workspace.id, library.id).documents == 1
    assert store.chunks(db, a.workspace.id, [library.id]) == []
    assert store.expired(db, now) == [older]  # and deleted by the sweep
    assert store.chunks(db, a.workspace.id, [library.id]) == []


def test_text_is_extracted_from_each_format_and_split_into_chunks():
    assert kind_of("notes.MD", None) == ("md", "text/markdown")
    assert kind_of("page", "text/html; charset=utf-8") == ("html", "text/html")
    for name in ("a.docx", "b.exe", "c"):
        with pytest.raises(InvalidRequest, match="not supported"):
            kind_of(name, "application/octet-stream")
    assert extract(PASS.encode(), "text/markdown") == (PASS, None)
    html, _ = extract(SOUP.encode(), "text/html")
    assert html.split("\n\n") == ["Recipes", "Onion soup",
                                  "Slice four onions and cook them slowly in butter for forty minutes.",
                                  "Add stock, simmer, and serve with toasted bread and grated cheese."]
    assert extract(pdf("Page one says hello."), "application/pdf") == ("Page one says hello.", 1)
    with pytest.raises(UnreadableDocument):
        extract(b"%PDF-1.4 broken", "application/pdf")
    with pytest.raises(UnreadableDocument):
        extract(b"\xff\xfe\xfa", "text/plain")

    text = "\n\n".join(f"Paragraph {i}. " + "word " * 30 for i in range(10))
    chunks = split(text, 400)
    assert all(len(c) <= 400 for c in chunks) and len(chunks) < 10  # short paragraphs packed together
    assert "".join(chunks).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")
    long = "A sentence that goes on. " * 100
    assert all(len(c) <= 300 for c in split(long, 300)) and split(long, 300)[0].endswith("on.")
    assert split("x" * 1000, 256) == ["x" * 256] * 3 + ["x" * 232]


@pytest.fixture
def pg(tmp_path):
    """A migrated store on PostgreSQL only (pgvector is PostgreSQL's)."""
    with postgres_database() as url:
        database = Database(url)
        database.migrate()
        yield database
        database.close()


def test_pgvector_finds_the_nearest_chunks_and_fills_in_older_ones(pg):
    db = pg
    need_pgvector(db)
    a, _ = accounts.create_key(db, NewKey("v"))
    now = utcnow()
    library = store.create(db, a.workspace.id, str(uuid.uuid4()), "V", None, None, now)
    document_id = add_document(db, a, library.id)
    lease = now + timedelta(minutes=10)
    assert store.claim(db, "a", now, lease).id == document_id
    unit = np.eye(3, dtype="<f4")
    chunks = [(f"axis {i}", unit[i].tobytes()) for i in range(3)]
    usage = Usage("doc-" + document_id, now, a.workspace.id, a.id, "mistral-embed", "libraries", 200, 3, 0)
    assert store.finish(db, document_id, lease, "text", None, chunks, usage)  # stored before pgvector is on

    assert vectors.enable(db)  # creates the extension and the column, fills in the three chunks
    query = np.array([0.1, 0.9, 0.3], dtype=np.float32)
    found = vectors.nearest(db, [library.id], query / np.linalg.norm(query), 2)
    assert [c.text for c, _ in found] == ["axis 1", "axis 2"]
    assert found[0][1] == pytest.approx(0.9 / np.linalg.norm(query), abs=1e-5)
    assert vectors.nearest(db, [], query, 2) == []
    assert vectors.enable(db)  # a second start: nothing to do


def need_pgvector(db) -> None:
    with db.engine.connect() as conn:
        available = conn.execute(text("select 1 from pg_available_extensions where name = 'vector'")).first()
    if available is None:
        message = "pgvector is not installed in the local PostgreSQL (scripts/services.sh builds it)"
        if os.environ.get("ALIZE_REQUIRE_SERVICES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
