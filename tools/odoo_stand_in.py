"""A stand-in, for the test tooling only, for two names a later Odoo 18.0 gained.

queue_job releases after 18.0.1.7.0.1 decorate ``queue.job.create`` with
``@api.private``, and the tests of queue_job 18.0.3 and later import
``odoo.tests.common.SETATTR_SOURCES``. Odoo 18.0 as released has neither: both came in
later 18.0 revisions. A site on a current Odoo 18.0 has them natively and never uses
this module. The test tooling (``./dev.sh test``) applies it, through
``tools/odoo_launcher.py`` and ``DQJ_ODOO_STAND_IN=1``, only to the runs of a queue_job
release that needs them, on an Odoo that lacks them. It is not part of the addon: the
addon never imports it and works the same with or without it.

What it supplies, each only where Odoo lacks it, with the behaviour of the later 18.0:

``odoo.api.private``
    The decorator: it marks the method ``_api_private = True`` and returns it.
    The mark alone would be decoration: what makes it mean something is the RPC check.
``odoo.service.model.get_public_method``, and its use by the RPC entry points
    Later 18.0 refuses, over RPC, a method whose name starts with ``_``, is an unsafe
    attribute, or that any class of the model's MRO marks ``_api_private``: AccessError
    "Private methods (such as 'model.method') cannot be called remotely.". The entry
    points are ``/jsonrpc`` and ``/xmlrpc`` (``odoo.service.model.execute_cr``) and
    the web client's ``/web/dataset/call_kw`` and ``/web/dataset/call_button``
    (``odoo.addons.web.controllers.dataset``, whose ``call_kw`` gets the check when
    the module is imported). Calls that are not RPC (``<function>`` in data files,
    Python code) are not checked, as in Odoo. ``tools/check_stand_in_rpc.py`` proves,
    on a running server, that ``queue.job.create`` (``@api.private`` in queue_job)
    is refused over both and that a public method still answers.
``odoo.tests.common.SETATTR_SOURCES``
    In later 18.0 a registry of the source files allowed to set attributes on model
    classes during tests, read by a checker that 18.0 as released does not have. Tests
    only add entries to it (queue_job registers its ``_patch_method``); here it is an
    empty mapping that nothing reads, which is what those entries do on an Odoo
    without the checker. The checker itself is not ported.
"""

import importlib.abc
import importlib.util
import pathlib
import sys

RPC_REFUSAL = "Private methods (such as '{model}.{method}') cannot be called remotely."


def private(method):
    """Decorate a public method so that it cannot be called over RPC.

    Business methods that must not be called remotely are named with a leading ``_``;
    this marks existing public methods (and ORM methods) the same way for RPC.
    """
    method._api_private = True
    return method


def get_public_method(model, name):
    """The unbound method ``name`` of ``model``'s class, if RPC may call it.

    Raises AttributeError when there is no such method, AccessError when the name is
    private (``_`` prefix), unsafe, or marked ``@api.private`` on any class of the
    model's MRO (an override without the mark does not make it public again).
    """
    from odoo.exceptions import AccessError  # noqa: PLC0415 -- Odoo is imported first
    from odoo.models import BaseModel  # noqa: PLC0415
    from odoo.tools.safe_eval import _UNSAFE_ATTRIBUTES  # noqa: PLC0415

    assert isinstance(model, BaseModel), f"{model!r} is not a BaseModel for {name}"
    cls = type(model)
    method = getattr(cls, name, None)
    if not callable(method):
        # AttributeError, as Odoo raises it: RPC clients read it as "no such method".
        raise AttributeError(f"The method '{model._name}.{name}' does not exist")  # noqa: TRY004
    for klass in cls.mro():
        defined = getattr(klass, name, None)
        if not defined:
            continue
        if (
            name.startswith("_")
            or name in _UNSAFE_ATTRIBUTES
            or getattr(defined, "_api_private", False)
        ):
            raise AccessError(RPC_REFUSAL.format(model=model._name, method=name))
    return method


def _checked_execute_cr(execute_cr):
    """``odoo.service.model.execute_cr`` (``/jsonrpc``, ``/xmlrpc``) with the check."""
    import odoo  # noqa: PLC0415

    def checked_execute_cr(cr, uid, obj, method, *args, **kw):
        recs = odoo.api.Environment(cr, uid, {}).get(obj)
        if recs is not None:  # an unknown model: execute_cr says so itself
            get_public_method(recs, method)
        return execute_cr(cr, uid, obj, method, *args, **kw)

    checked_execute_cr.__wrapped__ = execute_cr
    return checked_execute_cr


def _checked_call_kw(call_kw):
    """``odoo.api.call_kw`` as the web controller's routes call it, with the check."""

    def checked_call_kw(model, name, args, kwargs):
        get_public_method(model, name)
        return call_kw(model, name, args, kwargs)

    checked_call_kw.__wrapped__ = call_kw
    return checked_call_kw


def _patch_web_dataset(module):
    if not hasattr(module.call_kw, "__wrapped__"):
        module.call_kw = _checked_call_kw(module.call_kw)


def _add_setattr_sources(module):
    if not hasattr(module, "SETATTR_SOURCES"):
        module.SETATTR_SOURCES = {}


class _ThenPatch(importlib.abc.Loader):
    """Loads a module with its own loader, then patches it."""

    def __init__(self, loader, patch):
        self.loader = loader
        self.patch = patch

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.patch(module)

    def __getattr__(self, name):  # get_source, is_package, resource readers...
        return getattr(self.loader, name)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patch modules that Odoo imports later (an addon, the test framework), right
    after they are executed and before anything uses them."""

    def __init__(self, patches):
        self.patches = patches

    def find_spec(self, fullname, path, target=None):
        patch = self.patches.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _ThenPatch(spec.loader, patch)
                return spec
        return None


def apply():
    """Supply what this Odoo lacks; return what was supplied (nothing on an Odoo 18.0
    that has it all)."""
    import odoo  # noqa: PLC0415
    import odoo.service.model  # noqa: PLC0415

    supplied = []
    on_import = {"odoo.tests.common": _add_setattr_sources}
    if not hasattr(odoo.api, "private"):
        odoo.api.private = private
        supplied.append("odoo.api.private")
    service = odoo.service.model
    if not hasattr(service, "get_public_method"):
        service.get_public_method = get_public_method
        service.execute_cr = _checked_execute_cr(service.execute_cr)
        on_import["odoo.addons.web.controllers.dataset"] = _patch_web_dataset
        supplied.append("odoo.service.model.get_public_method (the RPC check)")
    for name, patch in list(on_import.items()):
        if name in sys.modules:  # imported already: patch it now
            patch(sys.modules[name])
            del on_import[name]
    sys.meta_path.insert(0, _PatchOnImport(on_import))
    if not _defines("odoo.tests.common", "SETATTR_SOURCES"):
        supplied.append("odoo.tests.common.SETATTR_SOURCES")
    return supplied


def _defines(module, name):
    """Whether Odoo's ``module`` defines ``name``, read in its source: importing the
    test framework outside a test run logs an error."""
    import odoo.release  # noqa: PLC0415 -- odoo: a namespace package from 19.0 on

    parts = module.split(".")[1:]
    odoo_dir = pathlib.Path(odoo.release.__file__).parent
    source = odoo_dir.joinpath(*parts).with_suffix(".py")
    return name in source.read_text()
