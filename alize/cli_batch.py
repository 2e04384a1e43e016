"""`alize batch`: submit a JSONL file as a batch job to a running server, follow it with a
progress bar, check, cancel, download. It speaks the HTTP API, like any client."""

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

batch_app = typer.Typer(help="Batch jobs on a running server (files of requests, answered later).",
                        no_args_is_help=True)
console = Console(stderr=True)
ACTIVE = ("QUEUED", "RUNNING", "CANCELLATION_REQUESTED")

Url = Annotated[str, typer.Option("--url", envvar="ALIZE_URL", help="The server.")]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar=["ALIZE_API_KEY", "MISTRAL_API_KEY"],
                                            help="An API key (or MISTRAL_API_KEY).", show_default=False)]
DEFAULT_URL = "http://127.0.0.1:8000"


def _client(url: str, api_key: str | None) -> httpx.Client:
    if not api_key:
        console.print("[red]error:[/red] give an API key: --api-key or MISTRAL_API_KEY")
        raise typer.Exit(2)
    return httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {api_key}"}, timeout=60)


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/red] cannot reach {client.base_url}: {exc}")
        raise typer.Exit(1) from exc
    if response.status_code >= 400:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        console.print(f"[red]error {response.status_code}:[/red] {message}")
        raise typer.Exit(1)
    return response


def _summary(job: dict[str, Any]) -> str:
    return (f"job {job['id']}: {job['status']}, {job['completed_requests']}/{job['total_requests']} done "
            f"({job['succeeded_requests']} succeeded, {job['failed_requests']} failed)")


def _follow(client: httpx.Client, job: dict[str, Any], poll_s: float) -> dict[str, Any]:
    """Polls the job until it ends, with a progress bar of its lines."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task(job["status"], total=job["total_requests"] or None)
        while job["status"] in ACTIVE:
            time.sleep(poll_s)
            job = _call(client, "GET", f"/v1/batch/jobs/{job['id']}").json()
            progress.update(task, description=job["status"], total=job["total_requests"] or None,
                            completed=job["completed_requests"])
    return job


@batch_app.command("submit")
def submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL: one {custom_id, body} a line.")],
    model: Annotated[str | None, typer.Option("--model", help="The model for lines that name none.")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="An agent (its id) to answer every line, "
                                                                "instead of a model.")] = None,
    endpoint: Annotated[str, typer.Option("--endpoint")] = "/v1/chat/completions",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the job until it ends.")] = True,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to save the results.")] = None,
    poll: Annotated[float, typer.Option("--poll", min=0.1, help="Seconds between checks.")] = 1.0,
    url: Url = DEFAULT_URL, api_key: ApiKey = None,
) -> None:
    """Upload FILE, start a job on it, and (unless --no-wait) follow it and save its results."""
    if model is not None and agent is not None:
        console.print("[red]error:[/red] give --model or --agent, not both (the agent's model answers)")
        raise typer.Exit(2)
    if model is None and agent is None:
        _refuse_lines_without_a_model(file)
    with _client(url, api_key) as client, file.open("rb") as data:
        uploaded = _call(client, "POST", "/v1/files", files={"file": (file.name, data, "application/jsonl")},
                         data={"purpose": "batch"}).json()
        job = _call(client, "POST", "/v1/batch/jobs", json={"input_files": [uploaded["id"]], "endpoint": endpoint,
                                                             "model": model, "agent_id": agent}).json()
        print(job["id"])
        if not wait:
            return
        job = _follow(client, job, poll)
        console.print(_summary(job))
        for error in job.get("errors") or []:  # grouped by cause
            console.print(f"  {error['count']} x {error['message']}", highlight=False, soft_wrap=True)
        if output is not None:
            _save(client, job, "output_file", output, "results")
            _save(client, job, "error_file", output.with_name(output.stem + ".errors.jsonl"), "error lines")
    if job["status"] != "SUCCESS" or (job["total_requests"] and not job["succeeded_requests"]):
        raise typer.Exit(1)  # a job whose every line failed did not do its work


def _save(client: httpx.Client, job: dict[str, Any], which: str, path: Path, what: str) -> None:
    if job[which]:
        path.write_bytes(_call(client, "GET", f"/v1/files/{job[which]}/content").content)
        console.print(f"{what} written to {path}")


def _refuse_lines_without_a_model(file: Path) -> None:
    """With no --model or --agent, every line must name its model (or, starting a
    conversation, its agent): say which do not, before uploading."""
    missing, total = [], 0
    with file.open("rb") as lines:
        for number, raw in enumerate((raw for raw in lines if raw.strip()), start=1):
            total += 1
            try:
                body = json.loads(raw).get("body")
            except (ValueError, AttributeError):
                continue  # the server reports malformed lines, each in the error file
            if isinstance(body, dict) and not body.get("model") and not body.get("agent_id"):
                missing.append(number)
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        console.print(f"[red]error:[/red] {len(missing)} of {total} lines name no model (line {shown}): "
                      "give --model or --agent, or set body.model on each line", highlight=False, soft_wrap=True)
        raise typer.Exit(2)


@batch_app.command("status")
def status(job_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None,
           follow: Annotated[bool, typer.Option("--follow", help="Follow the job until it ends.")] = False) -> None:
    """Show a job's state and counts."""
    with _client(url, api_key) as client:
        job = _call(client, "GET", f"/v1/batch/jobs/{job_id}").json()
        if follow:
            job = _follow(client, job, 1.0)
    print(_summary(job))
    for error in job["errors"]:
        print(f"  {error['count']} x {error['message']}")


@batch_app.command("cancel")
def cancel(job_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None) -> None:
    """Stop a job; the lines already answered are kept."""
    with _client(url, api_key) as client:
        job = _call(client, "POST", f"/v1/batch/jobs/{job_id}/cancel").json()
    print(_summary(job))


@batch_app.command("download")
def download(job_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None,
             errors: Annotated[bool, typer.Option("--errors", help="The error file instead.")] = False,
             output: Annotated[Path | None, typer.Option("--output", "-o", help="A file (default: stdout).")] = None,
             ) -> None:
    """Download a finished job's results (or its error lines)."""
    with _client(url, api_key) as client:
        job = _call(client, "GET", f"/v1/batch/jobs/{job_id}").json()
        file_id = job["error_file" if errors else "output_file"]
        if file_id is None:
            console.print(f"no {'error' if errors else 'output'} file (yet): {_summary(job)}")
            raise typer.Exit(1)
        content = _call(client, "GET", f"/v1/files/{file_id}/content").content
    if output is None:
        sys.stdout.buffer.write(content)
    else:
        output.write_bytes(content)
        console.print(f"{len(content)} bytes written to {output}")

