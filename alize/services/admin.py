"""What an admin key may see and do. An org-wide admin key manages every workspace; a
workspace admin key (alize keys create --admin --workspace W) only its own: its keys, its
usage, its jobs. /admin/v1 and the console both go through here, so the two can never
disagree about who sees what."""

from dataclasses import dataclass
from datetime import date

from alize.errors import Forbidden, NotFound
from alize.services.accounts import AccountService, LimitsSpec
from alize.services.reports import Report, ReportService, RequestReport
from alize.store.accounts import KeyInfo, WorkspaceInfo


@dataclass(frozen=True)
class AdminView:
    """One admin key's view of the accounts and reports."""

    admin: KeyInfo
    accounts: AccountService
    reports: ReportService

    @property
    def workspace_id(self) -> str | None:
        """The one workspace this admin manages; None: all of them."""
        return self.admin.admin_workspace_id

    @property
    def is_org_admin(self) -> bool:
        return self.workspace_id is None

    def _org_only(self, what: str) -> None:
        if not self.is_org_admin:
            raise Forbidden(f"{what} needs an org-wide admin key; this key administers workspace "
                            f"{self.admin.workspace.name!r} only")

    # -- workspaces -------------------------------------------------------------
    def workspaces(self) -> list[WorkspaceInfo]:
        return [w for w in self.accounts.list_workspaces() if self.sees_workspace(w.id)]

    def sees_workspace(self, workspace_id: str) -> bool:
        return self.workspace_id in (None, workspace_id)

    def workspace(self, ref: str) -> WorkspaceInfo:
        ws = self.accounts.get_workspace(ref)
        if not self.sees_workspace(ws.id):
            raise NotFound(f"no workspace named {ref!r}")  # another team's: as if it did not exist
        return ws

    def create_workspace(self, name: str, limits: LimitsSpec) -> WorkspaceInfo:
        self._org_only("Creating a workspace")
        return self.accounts.create_workspace(name, limits)

    def set_workspace_limits(self, ref: str, changes: dict[str, object]) -> WorkspaceInfo:
        self.workspace(ref)
        self._org_only("Changing a workspace's limits")
        return self.accounts.set_workspace_limits(ref, changes)

    # -- keys -------------------------------------------------------------------
    def keys(self, workspace: str | None = None) -> list[KeyInfo]:
        if workspace is not None:
            self.workspace(workspace)
        return [k for k in self.accounts.list_keys(workspace) if self.sees_workspace(k.workspace.id)]

    def key(self, key_id: str) -> KeyInfo:
        key = self.accounts.get_key(key_id)  # NotFound when there is none
        if not self.sees_workspace(key.workspace.id):
            raise NotFound(f"no key with id {key_id!r}")  # another team's: as if it did not exist
        return key

    def create_key(self, name: str, workspace: str | None = None, models: list[str] | None = None,
                   expires_in_days: float | None = None, limits: LimitsSpec | None = None,
                   admin: bool = False, admin_scoped: bool = False) -> tuple[KeyInfo, str]:
        """A key in one of this admin's workspaces (its own by default); a workspace admin
        may make workspace admins of its workspace, not org-wide ones."""
        target = self.workspace(workspace) if workspace else self.admin.workspace
        if admin and not admin_scoped:
            self._org_only("Creating an org-wide admin key")
        return self.accounts.create_key(name, target.name, models, expires_in_days, limits, admin, admin_scoped)

    def revoke_key(self, key_id: str) -> KeyInfo:
        self.key(key_id)
        return self.accounts.revoke_key(key_id)

    def rotate_key(self, key_id: str, grace_seconds: float) -> tuple[KeyInfo, str]:
        self.key(key_id)
        return self.accounts.rotate_key(key_id, grace_seconds)

    # -- usage ------------------------------------------------------------------
    def usage(self, start: str | date | None = None, end: str | date | None = None, group_by: str = "day",
              workspace: str | None = None, key: str | None = None) -> Report:
        """A usage report within this admin's workspaces (a workspace admin sees only its own)."""
        workspace_id = self.workspace(workspace).id if workspace else self.workspace_id
        if key is not None:
            self.key(key)
        return self.reports.usage(start, end, group_by, workspace_id, key)

    def usage_requests(self, start: str | date | None = None, end: str | date | None = None,
                       workspace: str | None = None, key: str | None = None, limit: int = 1000) -> RequestReport:
        """One row per request, within this admin's workspaces."""
        workspace_id = self.workspace(workspace).id if workspace else self.workspace_id
        if key is not None:
            self.key(key)
        return self.reports.requests(start, end, workspace_id, key, limit)
