"""The API emulator driven by a client no one here wrote: the official Kubernetes Python client.

Each test is one behaviour the operator, the chart or users' habits rely on, checked the way a
real API server answers it. Run by tests/fidelity.rs against a fresh emulator (KUBECONFIG), whose
watch history is short enough to make 410 Gone reachable.
"""

import os
import time
import unittest

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL, NS = "fidelity.test", "v1", "widgets", "default"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.fidelity.test"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [{
            "name": VERSION, "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {
                    "type": "object",
                    "x-kubernetes-validations": [{
                        "rule": "self.size >= oldSelf.size",
                        "message": "size may grow but not shrink",
                        "fieldPath": ".size",
                    }],
                    "properties": {
                        "size": {"type": "integer", "default": 1, "minimum": 1},
                        "color": {"type": "string", "enum": ["red", "blue"]},
                        "parts": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
            }}},
        }],
    },
}


def widget(name, **spec):
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


class Fidelity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        config.load_kube_config(config_file=os.environ["KUBECONFIG"])
        cls.custom = client.CustomObjectsApi()
        cls.core = client.CoreV1Api()
        client.ApiextensionsV1Api().create_custom_resource_definition(CRD, _preload_content=False)

    def create(self, name, **spec):
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, widget(name, **spec))

    def get(self, name):
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)

    def patch(self, name, body, **kwargs):
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name, body, **kwargs)

    def refused(self, status, call, *args, **kwargs):
        with self.assertRaises(ApiException) as caught:
            call(*args, **kwargs)
        self.assertEqual(caught.exception.status, status, caught.exception.body)
        return caught.exception

    def test_crud_with_defaults_conflicts_and_a_status_on_delete(self):
        made = self.create("crud", color="red")
        self.assertEqual(made["spec"]["size"], 1, "the schema's default is applied")
        self.assertEqual(made["metadata"]["generation"], 1)
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
        self.assertIn("crud", [w["metadata"]["name"] for w in listed["items"]])
        made["spec"]["size"] = 2
        replaced = self.custom.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "crud", made)
        self.assertEqual((replaced["spec"]["size"], replaced["metadata"]["generation"]), (2, 2))
        self.refused(409, self.custom.replace_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, "crud", made)
        self.refused(409, self.create, "crud")
        deleted = self.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "crud")
        self.assertEqual((deleted["kind"], deleted["status"]), ("Status", "Success"))
        self.refused(404, self.get, "crud")

    def test_every_patch_type(self):
        self.create("patched", color="red", parts=["a", "b"])
        merged = self.patch("patched", {"spec": {"color": "blue"}})
        self.assertEqual((merged["spec"]["color"], merged["spec"]["parts"]), ("blue", ["a", "b"]))
        # The client sends a list body for custom objects as a merge patch unless told otherwise.
        jsonpatch = self.patch("patched", [{"op": "add", "path": "/spec/parts/-", "value": "c"}],
                               _content_type="application/json-patch+json")
        self.assertEqual(jsonpatch["spec"]["parts"], ["a", "b", "c"])
        self.refused(422, self.patch, "patched", [{"op": "test", "path": "/spec/color", "value": "red"}],
                     _content_type="application/json-patch+json")
        applied = self.patch(
            "patched", widget("patched", size=3), field_manager="fidelity",
            _content_type="application/apply-patch+yaml", force=True)
        self.assertEqual((applied["spec"]["size"], applied["spec"]["color"]), (3, "blue"))
        self.core.create_namespaced_config_map(NS, {"metadata": {"name": "smp"}, "data": {"a": "1"}})
        strategic = self.core.patch_namespaced_config_map("smp", NS, {"data": {"b": "2"}})
        self.assertEqual(strategic.data, {"a": "1", "b": "2"}, "a strategic merge patch merges maps")

    def test_a_write_that_changes_nothing_stores_nothing(self):
        made = self.create("same", color="red")
        again = self.patch("same", {"spec": {"color": "red"}})
        self.assertEqual(again["metadata"]["resourceVersion"], made["metadata"]["resourceVersion"])
        self.assertEqual(again["metadata"]["generation"], 1)

    def test_dry_run_validates_and_stores_nothing(self):
        dry = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, widget("dry"), dry_run="All")
        self.assertEqual(dry["spec"]["size"], 1, "defaulted as a real create")
        self.refused(404, self.get, "dry")
        self.refused(422, self.custom.create_namespaced_custom_object, GROUP, VERSION, NS, PLURAL,
                     widget("dry", color="green"), dry_run="All")
        made = self.create("wet")
        patched = self.patch("wet", {"spec": {"size": 5}}, dry_run="All")
        self.assertEqual(patched["spec"]["size"], 5)
        self.assertEqual(self.get("wet")["metadata"]["resourceVersion"], made["metadata"]["resourceVersion"])

    def test_paging_with_limit_and_continue(self):
        names = [f"page-{n}" for n in range(5)]
        for name in names:
            self.core.create_namespaced_config_map(NS, {"metadata": {"name": name, "labels": {"paged": "yes"}}})
        seen, token, pages = [], None, 0
        while True:
            page = self.core.list_namespaced_config_map(NS, label_selector="paged=yes", limit=2, _continue=token)
            pages += 1
            seen += [c.metadata.name for c in page.items]
            self.assertLessEqual(len(page.items), 2)
            token = page.metadata._continue
            if not token:
                break
            self.assertEqual(page.metadata.remaining_item_count, 5 - len(seen))
        self.assertEqual((sorted(seen), pages), (names, 3))
        self.refused(400, self.core.list_namespaced_config_map, NS, limit=2, _continue="not-a-token")

    def test_label_and_field_selectors(self):
        for name, tier in [("sel-a", "a"), ("sel-b", "b"), ("sel-none", None)]:
            labels = {"tier": tier} if tier else {"other": "x"}
            self.core.create_namespaced_config_map(NS, {"metadata": {"name": name, "labels": labels}})

        def names(**selectors):
            found = self.core.list_namespaced_config_map(NS, **selectors).items
            return sorted(c.metadata.name for c in found if c.metadata.name.startswith("sel-"))

        self.assertEqual(names(label_selector="tier=a"), ["sel-a"])
        self.assertEqual(names(label_selector="tier in (a,b)"), ["sel-a", "sel-b"])
        self.assertEqual(names(label_selector="!tier"), ["sel-none"])
        self.assertEqual(names(label_selector="tier!=a"), ["sel-b", "sel-none"])
        self.assertEqual(names(field_selector="metadata.name=sel-b"), ["sel-b"])

    def test_watch_resumes_from_a_resource_version_and_old_ones_are_gone(self):
        start = self.core.list_namespaced_config_map(NS).metadata.resource_version
        self.core.create_namespaced_config_map(NS, {"metadata": {"name": "watched"}})
        self.core.patch_namespaced_config_map("watched", NS, {"data": {"k": "v"}})
        events = []
        for event in watch.Watch().stream(self.core.list_namespaced_config_map, NS,
                                          resource_version=start, timeout_seconds=2):
            if event["object"].metadata.name == "watched":
                events.append(event["type"])
            if len(events) == 2:
                break
        self.assertEqual(events, ["ADDED", "MODIFIED"], "resumed after the listed version")
        # More changes than the emulator keeps (tests/fidelity.rs: 200): the old version is gone.
        for n in range(210):
            self.core.patch_namespaced_config_map("watched", NS, {"data": {"k": str(n)}})
        with self.assertRaises(ApiException) as gone:
            for _ in watch.Watch().stream(self.core.list_namespaced_config_map, NS,
                                          resource_version=start, timeout_seconds=2):
                pass
        self.assertEqual(gone.exception.status, 410)

    def test_status_is_written_only_through_its_subresource(self):
        made = self.create("iso", color="red")
        status = self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, NS, PLURAL, "iso", {"status": {"phase": "Ready"}, "spec": {"size": 9}})
        self.assertEqual((status["status"]["phase"], status["spec"]["size"]), ("Ready", 1))
        self.assertEqual(status["metadata"]["generation"], 1, "a status write is no new generation")
        spec = self.patch("iso", {"spec": {"size": 2}, "status": {"phase": "Forged"}})
        self.assertEqual((spec["status"]["phase"], spec["metadata"]["generation"]), ("Ready", 2))
        self.assertEqual(made["metadata"]["uid"], spec["metadata"]["uid"])

    def test_finalizers_hold_a_deleted_object_until_removed(self):
        body = widget("held")
        body["metadata"]["finalizers"] = ["fidelity.test/hold"]
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "held")
        held = self.get("held")
        self.assertIsNotNone(held["metadata"].get("deletionTimestamp"))
        self.patch("held", [{"op": "remove", "path": "/metadata/finalizers"}],
                   _content_type="application/json-patch+json")
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                self.get("held")
            except ApiException as e:
                self.assertEqual(e.status, 404)
                return
            time.sleep(0.05)
        self.fail("the object outlived its last finalizer")

    def test_schema_and_validation_rules_refuse_with_the_field_named(self):
        self.create("rules", size=3)
        shrunk = self.refused(422, self.patch, "rules", {"spec": {"size": 2}})
        self.assertIn("spec.size", shrunk.body)
        self.assertIn("size may grow but not shrink", shrunk.body)
        self.assertEqual(self.patch("rules", {"spec": {"size": 4}})["spec"]["size"], 4)
        wrong = self.refused(422, self.patch, "rules", {"spec": {"color": "green"}})
        self.assertIn("spec.color", wrong.body)
        self.refused(422, self.create, "tiny", size=0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
