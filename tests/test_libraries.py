"""Document libraries (/v1/libraries) with the official SDK against a real server: libraries
created, listed, paged, changed and deleted; Markdown, HTML and PDF documents uploaded,
processed in the background into embedded chunks, read back and removed; an agent's
document_library tool retrieving the right document into a conversation (whole and
streamed, with tool.execution entries and tool_reference chunks) and into
/v1/agents/completions; a search that asks the client first (tool_configuration), allowed or
denied with tool_confirmations, also through the SDK's run_async and after a handoff;
sharing with another workspace as Viewer and Editor, and nothing seen without it; bad input
refused by name, changing nothing; processing and searches metered. Every answer validates
against the spec (tests/mistral-api/openapi-libraries.yaml). A second server on PostgreSQL
runs the upload-to-answer path there, and refuses an oversized upload."""

import asyncio
import json
import os
import signal
import time

import httpx
import pytest
from mistralai.client import Mistral
from mistralai.client import errors as mistral_errors

from tests.databases import postgres_database
from tests.platform_helpers import create_key, sqlite_url, usage_rows
from tests.server import start_server
from tests.spec import assert_valid
from tests.sse import conversation_events

ARGS = {"temperature": 0, "max_tokens": 8}
PASS = ("# The Zephyr pass\n\nThe Zephyr pass crosses the northern range at 2,417 metres. It is closed from "
        "November to May, when snow covers the road.\n\nThe nearest village is Alba, famous for its cheese.\n")
SOUP = ("<html><head><title>Recipes</title><style>p {color: red}</style></head><body><h1>Onion soup</h1>"
        "<p>Slice four onions and cook them slowly in butter for forty minutes.</p><script>alert(1)</script>"
        "<p>Add stock, simmer, and serve with toasted bread and grated cheese.</p></body></html>")


def pdf(text: str) -> bytes:
    """A one-page PDF showing `text` (Helvetica), with a correct cross-reference table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture
def client(server):
    return Mistral(api_key=server.key, server_url=server.url)


def processed(client, library_id: str, document_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = client.beta.libraries.documents.status(library_id=library_id, document_id=document_id)
        assert_valid(status.model_dump(mode="json", by_alias=True), "ProcessingStatus")
        if status.process_status not in ("todo", "in_progress"):
            return status.process_status
        assert time.monotonic() < deadline, "the document was not processed in time"
        time.sleep(0.1)


def upload(client, library_id: str, name: str, content: bytes) -> str:
    document = client.beta.libraries.documents.upload(library_id=library_id,
                                                      file={"file_name": name, "content": content})
    assert_valid(document.model_dump(mode="json", by_alias=True), "Document")
    return document.id


def test_a_library_is_created_listed_paged_changed_and_deleted(client, server):
    made = [client.beta.libraries.create(name=f"shelf {i}", description="books") for i in range(3)]
    for library in made:
        assert_valid(library.model_dump(mode="json", by_alias=True), "Library")
        assert library.nb_documents == 0 and library.owner_type == "Workspace"
    with server.client() as http:
        first = http.get("/v1/libraries", params={"page_size": 2, "search": "SHELF"}).json()
        assert_valid(first, "ListLibrariesResponse")
        second = http.get("/v1/libraries", params={"page_size": 2, "search": "shelf",
                                                   "page_token": first["next_page_token"]}).json()
        assert second["next_page_token"] is None
        old_style = http.get("/v1/libraries", params={"page": 1, "page_size": 2, "search": "shelf"}).json()
        assert old_style["pagination"]["total_items"] == 3 and len(old_style["data"]) == 1
        assert http.get("/v1/libraries", params={"page_token": "nonsense"}).status_code == 400
    listed = [lib["id"] for lib in first["data"] + second["data"]]
    assert listed == [lib.id for lib in reversed(made)]
    sdk_page = client.beta.libraries.list(search="shelf", page_size=2)
    assert [lib.id for lib in sdk_page.data] == listed[:2] and sdk_page.next_page_token

    changed = client.beta.libraries.update(library_id=made[0].id, name="renamed shelf")
    assert changed.name == "renamed shelf" and changed.description == "books"
    assert client.beta.libraries.get(library_id=made[0].id).name == "renamed shelf"
    for library in made:
        client.beta.libraries.delete(library_id=library.id)
    with pytest.raises(mistral_errors.SDKError) as gone:
        client.beta.libraries.get(library_id=made[0].id)
    assert gone.value.status_code == 404


def test_documents_are_processed_read_changed_and_deleted(client, server):
    library = client.beta.libraries.create(name="reading")
    ids = {name: upload(client, library.id, name, content) for name, content in (
        ("pass.md", PASS.encode()), ("soup.html", SOUP.encode()), ("note.pdf", pdf("Meet at the north gate at nine.")))}
    for document_id in ids.values():
        assert processed(client, library.id, document_id) == "done"

    text = client.beta.libraries.documents.text_content(library_id=library.id, document_id=ids["soup.html"]).text
    assert "Slice four onions" in text and "alert" not in text and "color" not in text
    assert "north gate" in client.beta.libraries.documents.text_content(library_id=library.id,
                                                                        document_id=ids["note.pdf"]).text
    pdf_doc = client.beta.libraries.documents.get(library_id=library.id, document_id=ids["note.pdf"])
    assert pdf_doc.number_of_pages == 1 and pdf_doc.mime_type == "application/pdf"
    md = client.beta.libraries.documents.get(library_id=library.id, document_id=ids["pass.md"])
    assert md.size == len(PASS.encode()) and md.tokens_processing_total > 0 and md.extension == "md"

    listed = client.beta.libraries.documents.list(library_id=library.id, sort_by="name", sort_order="asc")
    assert_valid(listed.model_dump(mode="json", by_alias=True), "ListDocumentsResponse")
    assert [d.name for d in listed.data] == ["note.pdf", "pass.md", "soup.html"]
    assert listed.pagination.total_items == 3
    assert client.beta.libraries.get(library_id=library.id).nb_documents == 3

    renamed = client.beta.libraries.documents.update(library_id=library.id, document_id=ids["pass.md"],
                                                     name="zephyr.md", attributes={"region": "north"})
    assert renamed.name == "zephyr.md" and renamed.attributes == {"region": "north"}
    client.beta.libraries.documents.reprocess(library_id=library.id, document_id=ids["pass.md"])
    assert processed(client, library.id, ids["pass.md"]) == "done"

    # signed URLs: anyone with the link reads the bytes or the text, without a key
    url = client.beta.libraries.documents.get_signed_url(library_id=library.id, document_id=ids["soup.html"])
    text_url = client.beta.libraries.documents.extracted_text_signed_url(library_id=library.id,
                                                                         document_id=ids["soup.html"])
    with httpx.Client() as anyone:
        original = anyone.get(url)
        assert original.status_code == 200 and original.content == SOUP.encode()
        assert original.headers["content-type"].startswith("text/html")
        assert anyone.get(text_url).text == text
        assert anyone.get(url + "x").status_code == 404
    client.beta.libraries.documents.delete(library_id=library.id, document_id=ids["soup.html"])
    with httpx.Client() as anyone:
        assert anyone.get(url).status_code == 404  # the links go with the document
    with pytest.raises(mistral_errors.SDKError) as gone:
        client.beta.libraries.documents.get(library_id=library.id, document_id=ids["soup.html"])
    assert gone.value.status_code == 404
    assert client.beta.libraries.get(library_id=library.id).nb_documents == 2

    # processing is billed once per document (and again when reprocessed), to the uploading key
    rows = [r for r in usage_rows(sqlite_url(server), endpoint="libraries") if r.model == "mistral-embed"]
    assert sum(r.prompt_tokens for r in rows) >= md.tokens_processing_total * 2
    client.beta.libraries.delete(library_id=library.id)


def _library_agent(client, name: str = "librarian"):
    library = client.beta.libraries.create(name=f"{name}'s shelf")
    pass_id = upload(client, library.id, "pass.md", PASS.encode())
    soup_id = upload(client, library.id, "soup.html", SOUP.encode())
    assert processed(client, library.id, pass_id) == processed(client, library.id, soup_id) == "done"
    agent = client.beta.agents.create(model="mistral-small-latest", name=name, completion_args=ARGS,
                                      tools=[{"type": "document_library", "library_ids": [library.id]}])
    return library, agent


def test_an_agent_answers_from_its_library_with_references(client, server):
    library, agent = _library_agent(client)
    before = len(usage_rows(sqlite_url(server), endpoint="libraries"))
    with server.client() as http:
        r = http.post("/v1/conversations", json={"agent_id": agent.id, "inputs": "How high is the Zephyr pass?"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert_valid(answer, "ConversationResponse")
    tool, message = answer["outputs"]
    assert tool["type"] == "tool.execution" and tool["name"] == "document_library"
    assert json.loads(tool["arguments"]) == {"query": "How high is the Zephyr pass?"}
    assert tool["info"]["results"][0]["document_name"] == "pass.md"  # the nearest chunk is the pass's
    assert message["content"][0]["type"] == "text"
    references = message["content"][1:]
    assert references and references[0] == {**references[0], "type": "tool_reference", "tool": "document_library",
                                            "title": "pass.md"}
    assert len(usage_rows(sqlite_url(server), endpoint="libraries")) == before + 1  # the query's embedding

    # the next turn searches again, and the history replays the answer's text only
    again = client.beta.conversations.append(conversation_id=answer["conversation_id"],
                                             inputs="What is cooked with onions?")
    assert again.outputs[0].type == "tool.execution"
    assert json.loads(again.outputs[0].arguments)["query"] == "What is cooked with onions?"
    assert again.outputs[0].info["results"][0]["document_name"] == "soup.html"
    history = client.beta.conversations.get_history(conversation_id=answer["conversation_id"])
    assert_valid(history.model_dump(mode="json", by_alias=True), "ConversationHistory")
    assert [e.type for e in history.entries] == ["message.input", "tool.execution", "message.output"] * 2

    completion = client.agents.complete(agent_id=agent.id, max_tokens=8,
                                        messages=[{"role": "user", "content": "When is the Zephyr pass closed?"}])
    assert completion.choices[0].message.content
    assert len(usage_rows(sqlite_url(server), endpoint="libraries")) == before + 3
    client.beta.agents.delete(agent_id=agent.id)
    client.beta.libraries.delete(library_id=library.id)


def test_a_streamed_turn_announces_the_search_and_ends_with_references(client, server):
    library, agent = _library_agent(client, "streamer")
    with server.client() as http:
        events = conversation_events(http, {"agent_id": agent.id, "inputs": "Tell me about the Zephyr pass."})
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["conversation.response.started", "tool.execution.started", "tool.execution.done"]
    assert kinds[-1] == "conversation.response.done" and set(kinds[3:-1]) == {"message.output.delta"}
    deltas = events[3:-1]
    assert all(d["output_index"] == 1 for d in deltas)
    references = [d["content"] for d in deltas if isinstance(d["content"], dict)]
    assert [r["title"] for r in references] == ["pass.md"]  # the soup recipe is too far from the question
    assert [d["content_index"] for d in deltas if isinstance(d["content"], dict)] == [1]
    stored = client.beta.conversations.get_history(conversation_id=events[0]["conversation_id"]).entries
    assert [e.type for e in stored] == ["message.input", "tool.execution", "message.output"]
    text = "".join(d["content"] for d in deltas if isinstance(d["content"], str))
    assert stored[-1].content[0].text == text
    client.beta.agents.delete(agent_id=agent.id)
    client.beta.libraries.delete(library_id=library.id)


ASKS_FIRST = {"requires_confirmation": ["document_library"]}


def _pass_library(client, name: str):
    library = client.beta.libraries.create(name=name)
    assert processed(client, library.id, upload(client, library.id, "pass.md", PASS.encode())) == "done"
    return library


def test_a_search_that_asks_first_waits_for_the_clients_confirmation(client, server):
    """tool_configuration.requires_confirmation: the turn stops at a pending function.call
    (nothing searched, no model run); tool_confirmations allow it (the search runs with the
    query it showed, then the model) or deny it (the model answers without it), and the
    stored call says which. Going on without an answer is refused by name."""
    library = _pass_library(client, "guarded shelf")
    agent = client.beta.agents.create(model="mistral-small-latest", name="careful", completion_args=ARGS, tools=[
        {"type": "document_library", "library_ids": [library.id], "tool_configuration": ASKS_FIRST}])
    searches = len(usage_rows(sqlite_url(server), endpoint="libraries"))
    with server.client() as http:
        r = http.post("/v1/conversations", json={"agent_id": agent.id, "inputs": "How high is the Zephyr pass?"})
        assert r.status_code == 200, r.text
        paused = r.json()
        assert_valid(paused, "ConversationResponse")
        [call] = paused["outputs"]
        assert (call["type"], call["name"], call["confirmation_status"]) == ("function.call", "document_library",
                                                                             "pending")
        assert json.loads(call["arguments"]) == {"query": "How high is the Zephyr pass?"}
        conversation = paused["conversation_id"]
        for body, named in (({"inputs": "Hello?"}, call["tool_call_id"]),
                            ({"inputs": [], "tool_confirmations": [{"tool_call_id": "call_nope",
                                                                    "confirmation": "allow"}]}, "call_nope"),
                            ({"inputs": [], "tool_confirmations": [{"tool_call_id": call["tool_call_id"],
                                                                    "confirmation": "maybe"}]}, "confirmation")):
            refused = http.post(f"/v1/conversations/{conversation}", json=body)
            assert refused.status_code in (400, 422) and named in refused.text, refused.text
            assert refused.json()["object"] == "error"
    assert len(client.beta.conversations.get_history(conversation_id=conversation).entries) == 2
    assert len(usage_rows(sqlite_url(server), endpoint="libraries")) == searches  # nothing searched yet

    resumed = client.beta.conversations.append(conversation_id=conversation, inputs=[], tool_confirmations=[
        {"tool_call_id": call["tool_call_id"], "confirmation": "allow"}])
    tool, message = resumed.outputs
    assert tool.type == "tool.execution" and json.loads(tool.arguments) == {"query": "How high is the Zephyr pass?"}
    assert tool.info["results"][0]["document_name"] == "pass.md"
    assert message.type == "message.output" and message.content[1].title == "pass.md"
    assert len(usage_rows(sqlite_url(server), endpoint="libraries")) == searches + 1

    again = client.beta.conversations.append(conversation_id=conversation, inputs="When is it closed?")
    [second] = again.outputs
    assert second.type == "function.call" and second.confirmation_status == "pending"
    denied = client.beta.conversations.append(conversation_id=conversation, inputs=[], tool_confirmations=[
        {"tool_call_id": second.tool_call_id, "confirmation": "deny"}])
    [answer] = denied.outputs
    assert answer.type == "message.output" and isinstance(answer.content, str)  # no search, no references
    assert len(usage_rows(sqlite_url(server), endpoint="libraries")) == searches + 1
    history = client.beta.conversations.get_history(conversation_id=conversation)
    assert_valid(history.model_dump(mode="json", by_alias=True), "ConversationHistory")
    assert [(e.type, getattr(e, "confirmation_status", None)) for e in history.entries] == [
        ("message.input", None), ("function.call", "allowed"), ("tool.execution", None), ("message.output", None),
        ("message.input", None), ("function.call", "denied"), ("message.output", None)]
    with pytest.raises(mistral_errors.SDKError) as refused:  # no way to ask the client there
        client.agents.complete(agent_id=agent.id, messages=[{"role": "user", "content": "How high?"}])
    assert refused.value.status_code == 400 and "/v1/conversations" in refused.value.body
    client.beta.agents.delete(agent_id=agent.id)
    client.beta.libraries.delete(library_id=library.id)


def test_the_sdks_run_defers_a_search_that_asks_first_then_runs_it_once_confirmed(client, server):
    """The SDK's RunContext flow: run_async raises DeferredToolCallsException for the pending
    call; run_async with its confirm() sends tool_confirmations and returns the answer; a
    streamed turn announces the pending call as a function.call.delta."""
    from mistralai.extra.exceptions import DeferredToolCallsException
    from mistralai.extra.run.context import RunContext

    library = _pass_library(client, "run shelf")
    agent = client.beta.agents.create(model="mistral-small-latest", name="runner", completion_args=ARGS, tools=[
        {"type": "document_library", "library_ids": [library.id], "tool_configuration": ASKS_FIRST}])

    async def run():
        async with RunContext(agent_id=agent.id) as ctx:
            with pytest.raises(DeferredToolCallsException) as deferred:
                await client.beta.conversations.run_async(run_ctx=ctx, inputs="How high is the Zephyr pass?")
            [pending] = deferred.value.deferred_calls
            assert pending.tool_name == "document_library"
            return await client.beta.conversations.run_async(run_ctx=ctx, inputs=[pending.confirm()])

    result = asyncio.run(run())
    assert [e.type for e in result.output_entries] == ["tool.execution", "message.output"]
    assert result.output_entries[0].info["results"][0]["document_name"] == "pass.md"

    with server.client() as http:
        events = conversation_events(http, {"agent_id": agent.id, "inputs": "How high is the Zephyr pass?"})
    assert [e["type"] for e in events] == ["conversation.response.started", "function.call.delta",
                                           "conversation.response.done"]
    assert events[1]["confirmation_status"] == "pending" and events[1]["name"] == "document_library"
    client.beta.agents.delete(agent_id=agent.id)
    client.beta.libraries.delete(library_id=library.id)


def test_an_agent_handed_to_asks_first_and_answers_once_confirmed(client, server):
    """The expert's search asks first: the turn stops after the handoff, and the confirmation
    resumes it with the expert (the conversation's own agent is the triage)."""
    library = _pass_library(client, "expert shelf")
    expert = client.beta.agents.create(model="mistral-small-latest", name="guarded expert", completion_args=ARGS,
                                       description="Answers questions about mountain passes.", tools=[{
                                           "type": "document_library", "library_ids": [library.id],
                                           "tool_configuration": ASKS_FIRST}])
    triage = client.beta.agents.create(model="mistral-small-latest", name="guarded triage", handoffs=[expert.id],
                                       completion_args={"temperature": 0, "max_tokens": 100, "tool_choice": "any"})
    with server.client() as http:
        r = http.post("/v1/conversations", json={"agent_id": triage.id, "inputs": "How high is the Zephyr pass?"})
        assert r.status_code == 200, r.text
        assert_valid(r.json(), "ConversationResponse")
        handoff, call = r.json()["outputs"]
        assert handoff["type"] == "agent.handoff" and handoff["next_agent_id"] == expert.id
        assert call["confirmation_status"] == "pending" and call["agent_id"] == expert.id
        assert len(usage_rows(sqlite_url(server), endpoint="conversations",
                              request_id=r.headers["x-request-id"])) == 1  # the triage's model call only
        events = conversation_events(http, {"agent_id": triage.id, "inputs": "How high is the Zephyr pass?"})
    assert [e["type"] for e in events] == ["conversation.response.started", "agent.handoff.started",
                                           "agent.handoff.done", "function.call.delta", "conversation.response.done"]
    assert events[3]["output_index"] == 1 and events[3]["confirmation_status"] == "pending"
    resumed = client.beta.conversations.append(conversation_id=r.json()["conversation_id"], inputs=[],
                                               tool_confirmations=[{"tool_call_id": call["tool_call_id"],
                                                                    "confirmation": "allow"}])
    tool, message = resumed.outputs
    assert tool.type == "tool.execution" and tool.agent_id == expert.id
    assert message.type == "message.output" and message.agent_id == expert.id
    for agent in (triage, expert):
        client.beta.agents.delete(agent_id=agent.id)
    client.beta.libraries.delete(library_id=library.id)


def test_tool_configuration_include_and_exclude_turn_the_search_off_and_bad_names_are_refused(client, server):
    library = _pass_library(client, "switched shelf")
    for config in ({"exclude": ["document_library"]}, {"include": []}):
        answer = client.beta.conversations.start(model="mistral-small-latest", inputs="How high is the Zephyr pass?",
                                                 completion_args=ARGS, tools=[{
                                                     "type": "document_library", "library_ids": [library.id],
                                                     "tool_configuration": config}])
        assert [e.type for e in answer.outputs] == ["message.output"], config
    kept = client.beta.conversations.start(model="mistral-small-latest", inputs="How high is the Zephyr pass?",
                                           completion_args=ARGS, tools=[{
                                               "type": "document_library", "library_ids": [library.id],
                                               "tool_configuration": {"include": ["document_library"]}}])
    assert [e.type for e in kept.outputs] == ["tool.execution", "message.output"]
    with server.client() as http:
        for config, named in (({"include": ["web_search"]}, "web_search"), ({"colour": ["x"]}, "colour"),
                              ({"exclude": "document_library"}, "exclude"), ("all", "tool_configuration")):
            tools = [{"type": "document_library", "library_ids": [library.id], "tool_configuration": config}]
            for r in (http.post("/v1/agents", json={"model": "mistral-small-latest", "name": "x", "tools": tools}),
                      http.post("/v1/conversations", json={"model": "mistral-small-latest", "inputs": "hi",
                                                           "tools": tools})):
                assert r.status_code == 400 and named in r.text, r.text
    client.beta.libraries.delete(library_id=library.id)


def test_another_workspace_sees_a_library_only_as_shared(client, server):
    with server.client(server.admin_key) as admin:
        workspace = admin.post("/admin/v1/workspaces", json={"name": "libraries-other"}).json()
    other = create_key(server, workspace="libraries-other")
    theirs_sdk = Mistral(api_key=other["secret"], server_url=server.url)
    library = client.beta.libraries.create(name="private shelf")
    document_id = upload(client, library.id, "pass.md", PASS.encode())
    processed(client, library.id, document_id)
    tool = [{"type": "document_library", "library_ids": [library.id]}]
    with server.client(other["secret"]) as theirs:
        assert library.id not in [lib["id"] for lib in theirs.get("/v1/libraries").json()["data"]]
        for r in (theirs.get(f"/v1/libraries/{library.id}"), theirs.get(f"/v1/libraries/{library.id}/documents"),
                  theirs.get(f"/v1/libraries/{library.id}/documents/{document_id}/text_content"),
                  theirs.patch(f"/v1/libraries/{library.id}", json={"name": "mine"}),
                  theirs.delete(f"/v1/libraries/{library.id}"),
                  theirs.post(f"/v1/libraries/{library.id}/documents", files={"file": ("x.md", b"x")}),
                  theirs.post("/v1/agents", json={"model": "mistral-small-latest", "name": "thief", "tools": tool})):
            assert r.status_code == 404 and r.json()["object"] == "error", r.text

        shared = client.beta.libraries.accesses.update_or_create(
            library_id=library.id, level="Viewer", share_with_uuid=workspace["id"], share_with_type="Workspace")
        assert_valid(shared.model_dump(mode="json", by_alias=True), "Sharing")
        accesses = client.beta.libraries.accesses.list(library_id=library.id)
        assert_valid(accesses.model_dump(mode="json", by_alias=True), "ListSharingResponse")
        assert [(a.share_with_uuid, a.role) for a in accesses.data][1:] == [(workspace["id"], "Viewer")]
        assert theirs_sdk.beta.libraries.get(library_id=library.id).name == "private shelf"
        agent = theirs_sdk.beta.agents.create(model="mistral-small-latest", name="reader", tools=tool,
                                              completion_args=ARGS)
        answer = theirs_sdk.beta.conversations.start(agent_id=agent.id, inputs="How high is the Zephyr pass?")
        assert answer.outputs[0].info["results"][0]["document_name"] == "pass.md"
        for r in (theirs.post(f"/v1/libraries/{library.id}/documents", files={"file": ("x.md", b"x")}),
                  theirs.delete(f"/v1/libraries/{library.id}/documents/{document_id}"),
                  theirs.put(f"/v1/libraries/{library.id}/share", json={
                      "level": "Editor", "share_with_uuid": workspace["id"], "share_with_type": "Workspace"})):
            assert r.status_code == 403 and r.json()["object"] == "error", r.text

        client.beta.libraries.accesses.update_or_create(library_id=library.id, level="Editor",
                                                        share_with_uuid=workspace["id"], share_with_type="Workspace")
        added = theirs.post(f"/v1/libraries/{library.id}/documents", files={"file": ("more.md", b"More.")})
        assert added.status_code == 201, added.text
        assert theirs.delete(f"/v1/libraries/{library.id}").status_code == 403  # only its owner deletes it

        client.beta.libraries.accesses.delete(library_id=library.id, share_with_uuid=workspace["id"],
                                              share_with_type="Workspace")
        assert theirs.get(f"/v1/libraries/{library.id}").status_code == 404
        # the agent made while it was shared finds nothing now, and says so to the model
        after = theirs_sdk.beta.conversations.start(agent_id=agent.id, inputs="How high is the Zephyr pass?")
        assert after.outputs[0].info == {"results": []}
    client.beta.libraries.delete(library_id=library.id)


@pytest.mark.parametrize(("name", "content", "status", "named"), [
    ("setup.exe", b"MZ\x90\x00", 400, ".exe"),
    ("report.docx", b"PK\x03\x04", 400, ".docx"),
    ("", b"no name", 422, "file"),  # a part without a filename is no file at all
])
def test_unsupported_uploads_are_refused_by_name_and_change_nothing(server, name, content, status, named):
    with server.client() as http:
        library_id = http.post("/v1/libraries", json={"name": "strict"}).json()["id"]
        r = http.post(f"/v1/libraries/{library_id}/documents", files={"file": (name, content)})
        assert r.status_code == status, r.text
        assert r.json()["object"] == "error" and named in r.text
        assert http.get(f"/v1/libraries/{library_id}/documents").json()["pagination"]["total_items"] == 0
        http.delete(f"/v1/libraries/{library_id}")


def test_bad_library_requests_are_refused_by_name(server):
    with server.client() as http:
        library_id = http.post("/v1/libraries", json={"name": "checked"}).json()["id"]
        cases = [
            (http.post("/v1/libraries", json={"name": ""}), 422, "name"),
            (http.post("/v1/libraries", json={"name": "x", "chunk_size": 10}), 422, "chunk_size"),
            (http.post("/v1/libraries", json={"name": "x", "owner_type": "User"}), 400, "owner_type"),
            (http.get("/v1/libraries/no-such-library"), 404, "no-such-library"),
            (http.post("/v1/libraries/no-such-library/documents", files={"file": ("a.md", b"a")}), 404,
             "no-such-library"),
            (http.get(f"/v1/libraries/{library_id}/documents/nope"), 404, "nope"),
            (http.get(f"/v1/libraries/{library_id}/documents", params={"sort_by": "colour"}), 400, "sort_by"),
            (http.put(f"/v1/libraries/{library_id}/share", json={
                "level": "Viewer", "share_with_uuid": "00000000-0000-0000-0000-000000000000",
                "share_with_type": "User"}), 400, "User"),
            (http.put(f"/v1/libraries/{library_id}/share", json={
                "level": "Owner", "share_with_uuid": "x", "share_with_type": "Workspace"}), 400, "level"),
            (http.put(f"/v1/libraries/{library_id}/share", json={
                "level": "Viewer", "share_with_uuid": "no-such-workspace", "share_with_type": "Workspace"}), 404,
             "no-such-workspace"),
            (http.post("/v1/agents", json={"model": "mistral-small-latest", "name": "x", "tools": [
                {"type": "document_library", "library_ids": []}]}), 400, "library_ids"),
            (http.post("/v1/conversations", json={"model": "mistral-small-latest", "inputs": "hi", "tools": [
                {"type": "document_library", "library_ids": ["gone"]}]}), 404, "gone"),
        ]
        for r, status, named in cases:
            assert r.status_code == status, r.text
            assert r.json()["object"] == "error" and named in r.text, r.text
        assert http.get(f"/v1/libraries/{library_id}").json()["name"] == "checked"
        http.delete(f"/v1/libraries/{library_id}")


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory):
    with postgres_database() as url:
        server = start_server(tmp_path_factory.mktemp("libraries-pg"), env={
            "ALIZE_DATABASE_URL": url, "ALIZE_MAX_DOCUMENT_BYTES": "4096"})
        yield server
        server.stop()


def test_on_postgresql_a_document_is_searched_and_an_oversized_one_refused(pg_server):
    assert "document libraries search with pgvector" in pg_server.log()  # services.sh builds it
    client = Mistral(api_key=pg_server.key, server_url=pg_server.url)
    library, agent = _library_agent(client, "postgres")
    answer = client.beta.conversations.start(agent_id=agent.id, inputs="Which village is near the pass?")
    assert answer.outputs[0].info["results"][0]["document_name"] == "pass.md"
    with pg_server.client() as http:
        r = http.post(f"/v1/libraries/{library.id}/documents", files={"file": ("big.md", b"x" * 5000)})
        assert r.status_code == 413 and r.json()["object"] == "error", r.text
        assert http.get(f"/v1/libraries/{library.id}").json()["nb_documents"] == 2


def test_a_document_survives_kill_9_midway_and_is_billed_once(tmp_path):
    env = {"ALIZE_WORKER_ID": "library-durability"}  # the same server, restarted
    words = "alpine meadow glacier valley summit ridge cheese village road snow".split()
    text = "\n\n".join(" ".join(words[(i * 7 + j) % len(words)] for j in range(120)) for i in range(600))
    server = start_server(tmp_path / "data", env=env)
    try:
        client = Mistral(api_key=server.key, server_url=server.url)
        library = client.beta.libraries.create(name="durable")
        document_id = upload(client, library.id, "long.md", text.encode())
        deadline = time.monotonic() + 60
        while client.beta.libraries.documents.status(library_id=library.id,
                                                     document_id=document_id).process_status != "in_progress":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
    finally:
        server.stop()
    assert usage_rows(sqlite_url(server), endpoint="libraries") == [], "the kill must land before it is stored"
    restarted = start_server(server.data_dir, env=env, create_keys=False)
    try:
        client = Mistral(api_key=server.key, server_url=restarted.url)
        assert processed(client, library.id, document_id, timeout=120) == "done"
        document = client.beta.libraries.documents.get(library_id=library.id, document_id=document_id)
        assert "1 documents this server was processing when it stopped" in restarted.log()
    finally:
        restarted.stop()
    rows = usage_rows(sqlite_url(server), endpoint="libraries")
    assert [r.prompt_tokens for r in rows] == [document.tokens_processing_total]
