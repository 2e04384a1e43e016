"""The Files API with the official SDK: upload, list, retrieve, download, delete; files
belong to a workspace and are invisible to every other."""

import asyncio
import io
import json

import httpx
import pytest
from mistralai.client import Mistral

from tests.platform_helpers import create_key
from tests.spec import assert_valid

LINES = b"".join(json.dumps({"custom_id": str(i), "body": {"messages": [{"role": "user", "content": f"Hi {i}"}],
                                                           "max_tokens": 4}}).encode() + b"\n" for i in range(5))


def test_sdk_files_round_trip(server):
    client = Mistral(api_key=server.key, server_url=server.url)
    uploaded = client.files.upload(file={"file_name": "requests.jsonl", "content": LINES}, purpose="batch")
    assert uploaded.size_bytes == len(LINES) and uploaded.purpose == "batch" and uploaded.num_lines == 5
    listed = client.files.list(purpose="batch")
    assert uploaded.id in [f.id for f in listed.data] and listed.total >= 1
    assert client.files.retrieve(file_id=uploaded.id).filename == "requests.jsonl"
    assert client.files.download(file_id=uploaded.id).read() == LINES
    assert client.files.delete(file_id=uploaded.id).deleted is True
    with server.client() as http:
        assert http.get(f"/v1/files/{uploaded.id}").status_code == 404


def test_files_conform_to_the_spec(http):
    r = http.post("/v1/files", files={"file": ("a.jsonl", io.BytesIO(LINES))}, data={"purpose": "batch"})
    assert r.status_code == 200, r.text
    assert_valid(r.json(), "CreateFileResponse")
    assert_valid(http.get(f"/v1/files/{r.json()['id']}").json(), "GetFileResponse")
    assert_valid(http.get("/v1/files", params={"page": 0, "page_size": 2}).json(), "ListFilesResponse")
    content = http.get(f"/v1/files/{r.json()['id']}/content")
    assert content.headers["content-type"] == "application/octet-stream" and content.content == LINES
    assert_valid(http.delete(f"/v1/files/{r.json()['id']}").json(), "DeleteFileResponse")


def test_another_workspace_cannot_see_read_sign_or_delete(server):
    with server.client(server.admin_key) as admin:
        admin.post("/admin/v1/workspaces", json={"name": "files-other"})
    other = create_key(server, workspace="files-other")
    with server.client() as mine:
        file_id = mine.post("/v1/files", files={"file": ("mine.jsonl", LINES)}, data={"purpose": "batch"}).json()["id"]
    with server.client(other["secret"]) as theirs:
        assert file_id not in [f["id"] for f in theirs.get("/v1/files").json()["data"]]
        for r in (theirs.get(f"/v1/files/{file_id}"), theirs.get(f"/v1/files/{file_id}/content"),
                  theirs.get(f"/v1/files/{file_id}/url"), theirs.delete(f"/v1/files/{file_id}")):
            assert r.status_code == 404 and r.json()["object"] == "error"
    with server.client() as mine:
        assert mine.get(f"/v1/files/{file_id}/content").content == LINES  # still there


@pytest.mark.parametrize(("files", "data", "status"), [
    ({"file": ("a.jsonl", LINES)}, {"purpose": "holiday"}, 400),
    (None, {"purpose": "batch"}, 422),
])
def test_bad_uploads_are_4xx(http, files, data, status):
    r = http.post("/v1/files", files=files, data=data) if files else http.post("/v1/files", data=data)
    assert r.status_code == status and r.json()["object"] == "error", r.text


def test_file_over_the_limit_is_413(tmp_path):
    from tests.server import start_server

    server = start_server(tmp_path / "data", env={"ALIZE_MAX_FILE_BYTES": "1000"})
    try:
        r = httpx.post(server.url + "/v1/files", headers={"Authorization": f"Bearer {server.key}"},
                       files={"file": ("big.jsonl", b"x" * 5000)}, data={"purpose": "batch"})
        assert r.status_code == 413 and r.json()["object"] == "error"
        r = httpx.post(server.url + "/v1/files", headers={"Authorization": f"Bearer {server.key}"},
                       files={"file": ("ok.jsonl", b"x" * 900)}, data={"purpose": "batch"})
        assert r.status_code == 200
    finally:
        server.stop()


def _peak_rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_large_files_stream_through_without_being_held_in_memory(server, tmp_path):
    import hashlib

    line = b'{"custom_id": "x", "body": {"max_tokens": 1, "messages": []}}' + b" " * 40 + b"\n"
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as f:
        for _ in range(100):
            f.write(line * ((1 << 20) // len(line)))
    size, lines = big.stat().st_size, big.read_bytes().count(b"\n")
    pid = server.process.pid
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident size to the current one
    before = _peak_rss_mb(pid)
    with server.client() as http, open(big, "rb") as upload:
        r = http.post("/v1/files", files={"file": ("big.jsonl", upload)}, data={"purpose": "batch"})
        assert r.status_code == 200, r.text
        info = r.json()
        assert (info["bytes"], info["num_lines"]) == (size, lines)
        digest, total = hashlib.sha256(), 0
        with http.stream("GET", f"/v1/files/{info['id']}/content") as download:
            assert int(download.headers["content-length"]) == size
            for part in download.iter_bytes():
                digest.update(part)
                total += len(part)
        assert total == size and digest.hexdigest() == info["signature"]
        http.delete(f"/v1/files/{info['id']}")
    grown = _peak_rss_mb(pid) - before
    assert grown < 40, f"a 100 MB upload and download raised the server's peak memory by {grown:.0f} MB"


def test_signed_url_reads_the_file_without_a_key_until_it_is_deleted(server):
    client = Mistral(api_key=server.key, server_url=server.url)
    uploaded = client.files.upload(file={"file_name": "notes d'été.jsonl", "content": LINES}, purpose="batch")
    signed = client.files.get_signed_url(file_id=uploaded.id, expiry=1)
    followed = httpx.get(signed.url)  # no key: the token is the authority
    assert followed.status_code == 200 and followed.content == LINES
    assert followed.headers["content-disposition"] == \
        "attachment; filename=\"notes d'_t_.jsonl\"; filename*=UTF-8''notes%20d%27%C3%A9t%C3%A9.jsonl"
    with server.client() as http:
        default = http.get(f"/v1/files/{uploaded.id}/url")
        assert default.status_code == 200 and default.json()["url"] != signed.url
        assert_valid(default.json(), "GetSignedUrlResponse")
        for expiry in (0, 169):
            r = http.get(f"/v1/files/{uploaded.id}/url", params={"expiry": expiry})
            assert r.status_code == 400 and r.json()["param"] == "expiry", r.text
    client.files.delete(file_id=uploaded.id)
    gone = httpx.get(signed.url)
    assert gone.status_code == 404 and gone.json()["object"] == "error"
    assert httpx.get(signed.url[:-3] + "abc").status_code == 404


def test_a_signed_links_download_name_has_no_folders(http):
    file_id = http.post("/v1/files", files={"file": ("..\\../etc/passwd", LINES)}, data={"purpose": "batch"}).json()["id"]
    followed = httpx.get(http.get(f"/v1/files/{file_id}/url").json()["url"])
    assert followed.headers["content-disposition"] == "attachment; filename=\"passwd\"; filename*=UTF-8''passwd"


def test_upload_expiry_is_kept_and_reported(server):
    client = Mistral(api_key=server.key, server_url=server.url)
    uploaded = client.files.upload(file={"file_name": "short-lived.jsonl", "content": LINES}, purpose="batch",
                                   expiry=2)
    assert uploaded.expires_at is not None and abs(uploaded.expires_at - uploaded.created_at - 7200) <= 1
    assert client.files.retrieve(file_id=uploaded.id).expires_at == uploaded.expires_at
    assert client.files.upload(file={"file_name": "kept.jsonl", "content": LINES}, purpose="batch").expires_at is None
    with server.client() as http:
        for data, status, param in (({"expiry": "0"}, 400, "expiry"), ({"expiry": "soon"}, 422, None),
                                    ({"visibility": "user"}, 422, None)):
            r = http.post("/v1/files", files={"file": ("a.jsonl", LINES)}, data={"purpose": "batch", **data})
            assert r.status_code == status and r.json()["object"] == "error", r.text
            assert param is None or r.json()["param"] == param


def test_expired_files_are_gone_for_readers_then_swept(db, tmp_path):
    from datetime import UTC, datetime, timedelta

    from alize.errors import NotFound
    from alize.services.files import FileService
    from alize.store.blobs import DirectoryBlobStore
    from alize.store.tables import StoredFile

    blobs = DirectoryBlobStore(tmp_path / "blobs")
    files = FileService(db, blobs, max_bytes=1 << 20)
    doomed = asyncio.run(files.upload("ws", "a.jsonl", "batch", io.BytesIO(LINES), None, expiry_hours=1))
    kept = asyncio.run(files.upload("ws", "b.jsonl", "batch", io.BytesIO(LINES), None))
    token = files.signed_url("ws", doomed.id, 1, "http://alize").rsplit("/", 1)[1]
    assert files.follow(token)[0].id == doomed.id and files.sweep() == 0
    with db.session() as session, session.begin():  # an hour later
        session.get(StoredFile, doomed.id).expires_at = datetime.now(UTC) - timedelta(seconds=1)
    for read in (lambda: files.get("ws", doomed.id), lambda: files.follow(token),
                 lambda: files.delete("ws", doomed.id), lambda: files.signed_url("ws", doomed.id, 1, "http://a")):
        with pytest.raises(NotFound):
            read()
    assert [f.id for f in files.list("ws", 0, 10, None, None)[0]] == [kept.id]
    assert files.sweep() == 1 and files.sweep() == 0
    with db.session() as session:
        assert session.get(StoredFile, doomed.id) is None
    assert not list(blobs.root.rglob(f"*{doomed.id}*")) and files.content("ws", kept.id) == LINES


def test_listing_filters_by_sample_type_source_and_media_type(server):
    with server.client(server.admin_key) as admin:
        admin.post("/admin/v1/workspaces", json={"name": "files-filters"})
    client = Mistral(api_key=create_key(server, workspace="files-filters")["secret"], server_url=server.url)
    batch = client.files.upload(file={"file_name": "a.jsonl", "content": LINES, "content_type": "application/jsonl"},
                                purpose="batch")
    scan = client.files.upload(file={"file_name": "scan.txt", "content": b"text", "content_type": "text/plain"},
                               purpose="ocr")

    def listed(**filters) -> set[str]:
        return {f.id for f in client.files.list(**filters).data}

    assert listed() == {batch.id, scan.id}
    assert listed(sample_type=["batch_request"]) == {batch.id}
    assert listed(sample_type=["instruct", "batch_request"]) == {batch.id, scan.id}
    assert listed(sample_type=["batch_result"]) == set() == listed(source=["mistral"])
    assert listed(source=["upload"]) == {batch.id, scan.id}
    assert listed(mimetypes=["text/plain"]) == {scan.id}
    assert client.files.list(mimetypes=["text/plain", "application/jsonl"], page_size=1).total == 2
    with server.client() as http:
        r = http.get("/v1/files", params={"sample_type": "batch_results"})  # a typo is not "every file"
        assert r.status_code == 422 and r.json()["object"] == "error", r.text


def test_openai_sdk_pages_through_files_with_its_cursor(server):
    from openai import OpenAI

    with server.client(server.admin_key) as admin:
        admin.post("/admin/v1/workspaces", json={"name": "files-cursor"})
    key = create_key(server, workspace="files-cursor")["secret"]
    client = OpenAI(api_key=key, base_url=f"{server.url}/v1")
    made = [client.files.create(file=(f"{i}.jsonl", LINES), purpose="batch").id for i in range(5)]
    # ready at once: the SDK's wait (which polls until a status says so) returns at its first look
    assert client.files.wait_for_processing(made[0], poll_interval=0.1, max_wait_seconds=1).status == "processed"
    newest_first = [f.id for f in client.files.list(limit=2)]  # the SDK follows has_more and after
    assert newest_first == made[::-1]
    assert [f.id for f in client.files.list()] == made[::-1]  # one page, has_more false: no endless loop
    assert [f.id for f in client.files.list(limit=2, order="asc")] == made
    first = client.files.list(limit=2)
    assert first.has_more is True and [f.id for f in first.data] == made[:2:-1]
    with server.client(key) as http:
        r = http.get("/v1/files", params={"after": made[0], "limit": 10})
        assert r.json()["data"] == [] and r.json()["has_more"] is False
        r = http.get("/v1/files", params={"after": "file-unknown"})
        assert r.status_code == 400 and r.json()["param"] == "after", r.text
    mistral = Mistral(api_key=key, server_url=server.url)  # Mistral's pages, unchanged beside
    assert [f.id for f in mistral.files.list(page=1, page_size=2).data] == made[2:0:-1]
