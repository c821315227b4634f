"""``[workspace]`` validation: defaults, the root under the state dir, every problem reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adw_modules.config.validation import Validator
from adw_modules.config.workspace import DEFAULT_REMOTE, WorkspaceConfig, validate_workspace


def _validate(data: dict[str, Any], tmp_path: Path) -> tuple[WorkspaceConfig | None, list[str]]:
    v = Validator(data, tmp_path / "config.toml")
    return validate_workspace(v, data), v.issues


def test_absent_table_is_none_and_defaults_follow_the_state_dir(tmp_path: Path) -> None:
    assert _validate({}, tmp_path) == (None, [])
    cfg, issues = _validate({"workspace": {}}, tmp_path)
    assert issues == [] and cfg is not None
    assert cfg.root == tmp_path.resolve() / ".adw" / "workspaces"
    assert (cfg.remote, cfg.branch_prefix, cfg.push_on_failure, cfg.keep_days, cfg.max_disk_mb, cfg.token_env) == (
        DEFAULT_REMOTE,
        "adw/",
        True,
        7.0,
        20000.0,
        "GITHUB_TOKEN",
    )
    assert cfg.remote_url("acme/widgets") == "https://github.com/acme/widgets.git"
    cfg, _ = _validate({"coordinator": {"state_dir": "/srv/adw"}, "workspace": {"keep_days": 2}}, tmp_path)
    assert cfg is not None and cfg.root == Path("/srv/adw/workspaces") and cfg.keep_days == 2.0
    cfg, _ = _validate({"workspace": {"root": "ws", "push_on_failure": False}}, tmp_path)
    assert cfg is not None and cfg.root == tmp_path.resolve() / "ws"
    assert not cfg.should_push(succeeded=False) and cfg.should_push(succeeded=True)


def test_every_problem_is_reported(tmp_path: Path) -> None:
    bad = {
        "remote": "https://me:s3cret-token@github.com/{repo}.git",
        "branch_prefix": "../x",
        "keep_days": -1,
        "max_disk_mb": "lots",
        "kep_days": 3,
    }
    _, issues = _validate({"workspace": bad}, tmp_path)
    text = "\n".join(issues)
    assert "remote contains a password" in text
    assert 'branch_prefix "../x"' in text
    assert "keep_days must be greater than 0" in text
    assert "max_disk_mb must be" in text
    assert 'unknown key "kep_days" (did you mean "keep_days"?)' in text
    _, issues = _validate({"workspace": {"remote": "/srv/git/{owner}/{repo}.git"}}, tmp_path)
    assert any("only the placeholder {repo}" in i for i in issues)
