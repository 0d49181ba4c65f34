"""Every action of every admin page we ship, third-party pages included, declares a permission
that viewers do not have (issue 14, item 8: a viewer disabled "Sweep due tokens")."""

import pytest
from django.contrib import admin, messages
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.test import RequestFactory
from django.urls import reverse

from core.roles import VIEWERS
from tests import admin_world

pytestmark = pytest.mark.django_db
# What an action may require: a model permission that changes rows, or one of ours
# (README "Who may do what"; each has a has_<name>_permission on its ModelAdmin).
DECLARED = {"change", "delete", "add", "refresh", "toggle", "send_test", "manage"}


def actions_for(user) -> dict[str, dict[str, tuple]]:
    """{model label: get_actions()} as `user` sees them on each changelist."""
    request = RequestFactory().get("/admin/")
    request.user = user
    return {
        model._meta.label_lower: model_admin.get_actions(request)
        for model, model_admin in admin.site._registry.items()
    }


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", "", "pw-root-123")


@pytest.fixture
def viewer(django_user_model):
    user = django_user_model.objects.create_user("watcher", password="pw-123", is_staff=True)
    user.groups.add(Group.objects.get(name=VIEWERS))
    return user


def test_every_action_declares_a_permission(superuser):
    found = actions_for(superuser)
    assert "disable_tasks" in found["django_celery_beat.periodictask"]  # the walk sees them
    for label, actions in found.items():
        for name, (func, _name, _description) in actions.items():
            declared = set(getattr(func, "allowed_permissions", ()))
            assert declared, f"{label}: action {name} declares no permission"
            assert declared <= DECLARED, f"{label}: action {name} needs {declared}"


def test_the_actions_keep_their_names_and_descriptions(superuser):
    periodic = actions_for(superuser)["django_celery_beat.periodictask"]
    assert {"enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks"} <= set(periodic)
    assert str(periodic["disable_tasks"][2]) == "Disable selected tasks"


def test_a_viewer_is_offered_no_action_anywhere(viewer):
    offered = {label: list(actions) for label, actions in actions_for(viewer).items() if actions}
    assert offered == {}


def test_a_viewer_posting_any_action_changes_nothing(token, superuser, viewer, client):
    rows = admin_world.build(token)
    client.force_login(viewer)
    for label, actions in actions_for(superuser).items():
        url = reverse(f"admin:{label.replace('.', '_')}_changelist")
        for name in actions:
            before = admin_world.snapshot()
            response = client.post(
                url, {"action": name, "index": 0, "_selected_action": [rows[label].pk]}
            )
            done = [m for m in get_messages(response.wsgi_request) if m.level != messages.WARNING]
            assert response.status_code in (200, 302, 403), (label, name, response.status_code)
            assert not done, f"{label}: a viewer ran {name}: {done}"
            assert admin_world.changed(before, admin_world.snapshot()) == [], (label, name)


def test_an_admin_still_disables_the_sweep(token, superuser, client):
    rows = admin_world.build(token)
    sweep = rows["django_celery_beat.periodictask"]
    client.force_login(superuser)
    url = reverse("admin:django_celery_beat_periodictask_changelist")
    client.post(url, {"action": "disable_tasks", "index": 0, "_selected_action": [sweep.pk]})
    sweep.refresh_from_db()
    assert sweep.enabled is False
