"""Where every action that changes the run store ends: what changed, said once, and every
selection, URL parameter and label that depended on it brought up to date.

The actions (delete, cancel, resume, launch, sweep) are plain Python over ``lab.runs.jobs``: each
returns an :class:`Outcome` (the message for the user, the run ids that are gone, the run to
show next) or raises ``jobs.JobError``/``LookupError``/``ValueError`` saying why not.

A page hands the outcome to :func:`end`, the one place where a page's actions end: it keeps the
message for the next run of the script, drops the gone ids from every widget selection and
URL parameter (a deleted run leaves no chip behind and the rest of the selection stays), points
the URL (and the page's picker) at the run to show next, and reruns. :func:`begin`, at the top
of every page that acts, applies that and shows the message as a toast. Labels (statuses) are
then read from the store by the rerun, never kept from what the page saw before the action.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.runs import jobs
from lab.runs.store import ACTIVE, RESUMABLE, Store

_FLASH = "_lab_flash"      # session_state: the outcome's message, shown by the next begin()
_PENDING = "_lab_pending"  # session_state: widget values to set before the widgets are drawn


@dataclass(frozen=True)
class Outcome:
    """What an action did, for the page that asked for it."""

    message: str                              # one sentence: what happened to which run
    icon: str = ":material/check_circle:"
    gone: tuple[str, ...] = ()                # run ids no longer in the store
    show: Mapping[str, str] = field(default_factory=dict)  # URL parameter -> the run to show


def _label(store: Store, run_id: str) -> str:
    run = store.require_run(run_id)
    return f"{run.id} ({run.name})" if run.name else run.id


def delete(run_id: str, *, store: Store | None = None) -> Outcome:
    """Delete a run that is not running (cancel it first): its rows, metrics and folder."""
    with _opened(store) as st:
        label = _label(st, run_id)
        jobs.delete(run_id, store=st)
    return Outcome(f"Deleted run {label}: its metrics and folder are gone.",
                   icon=":material/delete:", gone=(run_id,))


def cancel(run_ids: Sequence[str], *, store: Store | None = None) -> Outcome:
    """Cancel the queued or running ones among ``run_ids`` (SIGTERM: they checkpoint first)."""
    done = []
    with _opened(store) as st:
        for rid in run_ids:
            if st.require_run(rid).status in ACTIVE:
                jobs.cancel(rid, store=st, wait=False)
                done.append(_label(st, rid))
    if not done:
        raise jobs.JobError("nothing to cancel: the run has already ended")
    return Outcome(f"Cancel requested for run {', '.join(done)}: it saves a checkpoint and "
                   "stops; Resume continues it from there.", icon=":material/stop_circle:")


def resume(run_id: str, *, store: Store | None = None) -> Outcome:
    """Queue a cancelled, failed, interrupted or stale run again, from its last checkpoint."""
    with _opened(store) as st:
        jobs.resume(run_id, store=st)
        label, status = _label(st, run_id), st.require_run(run_id).status
    return Outcome(f"Resumed run {label}: {status}, from its last checkpoint.",
                   icon=":material/play_circle:")


def launched(run_ids: Sequence[str], what: str = "run",
             show: Mapping[str, str] | None = None) -> Outcome:
    """The outcome of a launch that already happened (``jobs.launch`` and friends); the URL
    then shows ``show`` (default: ``run=<the last id>``)."""
    with Store() as st:
        status = {st.require_run(r).status for r in run_ids}
    state = "queued: it starts when a slot frees up" if status == {"queued"} else "started"
    return Outcome(f"Launched {what} {', '.join(run_ids)} ({state}).",
                   icon=":material/rocket_launch:",
                   show=dict(show) if show is not None else {"run": run_ids[-1]})


def picker_key(base: str, labels: Iterable[str]) -> str:
    """A selectbox key that changes whenever one of its option labels does.

    Streamlit 1.67's selectbox keeps showing the label its option had when it was chosen
    ("… · running") after the label changed ("… · completed"): only a new widget shows the new
    one. So a picker whose labels carry statuses takes this key (and its value from the URL).
    """
    import hashlib

    digest = hashlib.sha1("\n".join(labels).encode()).hexdigest()[:10]
    return f"{base}-{digest}"


def resumable(status: str) -> bool:
    """Whether a run with this status can be resumed (the one rule: ``store.RESUMABLE``)."""
    return status in RESUMABLE


def _opened(store: Store | None):
    """The given store (left open), or a fresh one closed at the end."""
    return contextlib.nullcontext(store) if store is not None else Store()


# -- the Streamlit side: one place where a page's store-changing actions end ---------------------


def forget(value: Any, gone: Iterable[str]) -> tuple[bool, Any]:
    """``value`` without the ids in ``gone``: (changed, new value); a str id that is gone
    becomes None, a list loses those ids."""
    gone = set(gone)
    if isinstance(value, str):
        return (True, None) if value in gone else (False, value)
    if isinstance(value, (list, tuple)) and any(isinstance(v, str) and v in gone for v in value):
        return True, [v for v in value if not (isinstance(v, str) and v in gone)]
    return False, value


def end(outcome: Outcome, *, select: Mapping[str, Any] | None = None,
        page: str | None = None) -> None:
    """End a store-changing action: keep its message, drop gone ids from every selection and
    URL parameter, show ``outcome.show`` in the URL, set the widgets in ``select`` (key ->
    value) on the next run, and rerun the whole page (statuses and labels are read afresh), or
    open ``page`` (a page file) with ``outcome.show`` as its URL parameters."""
    import streamlit as st

    if page is not None:
        st.session_state[_FLASH] = (outcome.message, outcome.icon)
        st.switch_page(page, query_params=dict(outcome.show))

    pending: dict[str, Any] = dict(select or {})
    if outcome.gone:
        for key in list(st.session_state.keys()):
            if str(key).startswith("_lab_") or key in pending:
                continue
            changed, value = forget(st.session_state[key], outcome.gone)
            if changed:
                pending[key] = value
        for name in list(st.query_params.keys()):
            values = st.query_params.get_all(name)
            kept = [v for v in values if v not in outcome.gone]
            if kept != values:
                st.query_params[name] = kept
    for name, run_id in outcome.show.items():
        st.query_params[name] = run_id
    st.session_state[_FLASH] = (outcome.message, outcome.icon)
    st.session_state[_PENDING] = pending
    st.rerun(scope="app")


def begin() -> None:
    """At the top of a page, before its widgets: apply what the last action's :func:`end`
    left for this run, and show its message."""
    import streamlit as st

    for key, value in st.session_state.pop(_PENDING, {}).items():
        if value is None:
            st.session_state.pop(key, None)
        else:
            st.session_state[key] = value
    flash = st.session_state.pop(_FLASH, None)
    if flash:
        message, icon = flash
        st.toast(message, icon=icon, duration="long")


def ended_run_buttons(run_id: str, status: str, *, noun: str = "run",
                      resume_label: str = "Resume", delete_label: str = "Delete",
                      select: Mapping[str, Any] | None = None) -> None:
    """One row for an ended run, the same on every page that shows one: Resume (where the
    status allows it) and Delete (after a "Yes, delete it" tick), each ending in :func:`end`.
    Keys: ``resume-<id>``, ``sure-<id>``, ``delete-<id>``."""
    import streamlit as st

    can_resume = resumable(status)
    cols = iter(st.columns([2, 1, 1, 2] if can_resume else [1, 1, 4],
                           vertical_alignment="center"))
    try:
        if can_resume and next(cols).button(resume_label, key=f"resume-{run_id}",
                                            type="primary"):
            end(resume(run_id), select=select)
        sure = next(cols).checkbox("Yes, delete it", key=f"sure-{run_id}",
                                   help=f"deletes the {noun}, its metrics and its folder")
        if next(cols).button(delete_label, key=f"delete-{run_id}", disabled=not sure):
            end(delete(run_id))
    except (jobs.JobError, LookupError, ValueError) as e:
        st.error(f"{e}")
