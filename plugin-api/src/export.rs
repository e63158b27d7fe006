//! Glue between [`Worker`]s and the raw ABI, used by [`export_workers!`](crate::export_workers).
//!
//! Every entry point runs the author's code inside `catch_unwind`: a panic that crossed
//! the `extern "C"` boundary would abort the runner, so it becomes an error instead.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use abi_stable::std_types::{RResult, RStr, RString};
use serde_json::{Map, Value};

use crate::abi::RunContextRef;
use crate::manifest::{LibraryManifest, WorkerManifest};
use crate::worker::{Context, Input, Worker};

/// The workers one library exports, with their manifests computed once.
pub struct Registry {
    workers: Vec<Box<dyn Worker>>,
    manifests: OnceLock<Vec<WorkerManifest>>,
}

impl Registry {
    /// Wraps the exported workers.
    pub fn new(workers: Vec<Box<dyn Worker>>) -> Self {
        Registry {
            workers,
            manifests: OnceLock::new(),
        }
    }

    fn manifests(&self) -> &[WorkerManifest] {
        self.manifests
            .get_or_init(|| self.workers.iter().map(|w| w.manifest()).collect())
    }

    /// The library manifest.
    pub fn library_manifest(&self) -> LibraryManifest {
        LibraryManifest {
            api_version: crate::abi::API_VERSION.to_owned(),
            workers: self.manifests().to_vec(),
        }
    }

    /// Runs `action` of worker `identifier`, validating what the host passed.
    pub fn run(
        &self,
        ctx: &Context<'_>,
        identifier: &str,
        action: &str,
        data: &str,
        settings: &str,
    ) -> Result<Value, String> {
        let index = self
            .manifests()
            .iter()
            .position(|m| m.identifier == identifier)
            .ok_or_else(|| format!("this library has no worker '{identifier}'"))?;
        let manifest = &self.manifests()[index];
        if manifest.find_action(action).is_none() {
            return Err(format!("worker '{identifier}' has no action '{action}'"));
        }
        let input = Input {
            data: parse_object(data, "task data")?,
            settings: parse_object(settings, "worker settings")?,
        };
        self.workers[index]
            .run(ctx, action, input)
            .map_err(|e| e.message().to_owned())
    }
}

fn parse_object(text: &str, what: &str) -> Result<Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!("{what} must be a JSON object")),
        Err(e) => Err(format!("{what} is not valid JSON: {e}")),
    }
}

/// The host's enqueue service, once the runner offered it (0: not offered). One per
/// library: every library has its own copy of the SDK.
static HOST_ENQUEUE: AtomicUsize = AtomicUsize::new(0);

/// Body of the library's [`HOST_SERVICES_SYMBOL`](crate::abi::HOST_SERVICES_SYMBOL)
/// export: keeps the host's services for [`Context::enqueue`].
pub fn set_host_services(enqueue: crate::abi::EnqueueFn) {
    HOST_ENQUEUE.store(enqueue as usize, Ordering::Release);
}

/// The host's enqueue service, if the runner offered one.
pub(crate) fn host_enqueue() -> Option<crate::abi::EnqueueFn> {
    match HOST_ENQUEUE.load(Ordering::Acquire) {
        0 => None,
        // SAFETY: only `set_host_services` stores here, and only an `EnqueueFn`.
        f => Some(unsafe { std::mem::transmute::<usize, crate::abi::EnqueueFn>(f) }),
    }
}

/// Text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

/// Body of the library's `manifest` entry point.
pub fn manifest_entry(registry: fn() -> &'static Registry) -> RResult<RString, RString> {
    let outcome = catch_unwind(|| {
        let manifest = registry().library_manifest();
        serde_json::to_string(&manifest).map_err(|e| e.to_string())
    });
    match outcome {
        Ok(Ok(json)) => RResult::ROk(json.into()),
        Ok(Err(e)) => RResult::RErr(format!("could not serialize the manifest: {e}").into()),
        Err(p) => RResult::RErr(
            format!(
                "the worker panicked while describing itself: {}",
                panic_message(&*p)
            )
            .into(),
        ),
    }
}

/// Body of the library's `run` entry point.
pub fn run_entry(
    registry: fn() -> &'static Registry,
    ctx: RunContextRef<'_>,
    identifier: RStr<'_>,
    action: RStr<'_>,
    data: RStr<'_>,
    settings: RStr<'_>,
) -> RResult<RString, RString> {
    let context = Context::from_raw(ctx);
    guarded_run(|| {
        registry().run(
            &context,
            identifier.as_str(),
            action.as_str(),
            data.as_str(),
            settings.as_str(),
        )
    })
}

/// Runs an action body with panics turned into errors and the result turned into JSON
/// text, exactly as it crosses the ABI.
pub fn guarded_run(body: impl FnOnce() -> Result<Value, String>) -> RResult<RString, RString> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => match serde_json::to_string(&value) {
            Ok(json) => RResult::ROk(json.into()),
            Err(e) => RResult::RErr(format!("could not serialize the result: {e}").into()),
        },
        Ok(Err(message)) => RResult::RErr(message.into()),
        Err(p) => RResult::RErr(format!("worker panicked: {}", panic_message(&*p)).into()),
    }
}

/// Exports workers from a `cdylib` crate so the stask host can load them.
///
/// Call it once, at the crate root, with one expression per worker:
///
/// ```
/// use stask_plugin_api::prelude::*;
///
/// #[derive(Default)]
/// struct Noop;
///
/// impl Worker for Noop {
///     fn manifest(&self) -> WorkerManifest {
///         WorkerManifest::new("noop", "No-op").action(ActionSpec::new("run", "Do nothing"))
///     }
///     fn run(&self, _ctx: &Context<'_>, _action: &str, _input: Input) -> Result<Value, Error> {
///         Ok(Value::Null)
///     }
/// }
///
/// stask_plugin_api::export_workers![Noop::default()];
/// # fn main() {}
/// ```
///
/// The expressions are evaluated lazily, the first time the host asks for the manifest,
/// inside a panic guard.
#[macro_export]
macro_rules! export_workers {
    ($($worker:expr),+ $(,)?) => {
        #[doc(hidden)]
        fn __stask_registry() -> &'static $crate::__private::Registry {
            static REGISTRY: ::std::sync::OnceLock<$crate::__private::Registry> =
                ::std::sync::OnceLock::new();
            REGISTRY.get_or_init(|| {
                $crate::__private::Registry::new(::std::vec![
                    $(::std::boxed::Box::new($worker) as ::std::boxed::Box<dyn $crate::Worker>),+
                ])
            })
        }

        #[doc(hidden)]
        extern "C" fn __stask_manifest() -> $crate::__private::RResult<
            $crate::__private::RString,
            $crate::__private::RString,
        > {
            $crate::__private::manifest_entry(__stask_registry)
        }

        #[doc(hidden)]
        extern "C" fn __stask_run(
            ctx: $crate::abi::RunContextRef<'_>,
            worker: $crate::__private::RStr<'_>,
            action: $crate::__private::RStr<'_>,
            data: $crate::__private::RStr<'_>,
            settings: $crate::__private::RStr<'_>,
        ) -> $crate::__private::RResult<$crate::__private::RString, $crate::__private::RString> {
            $crate::__private::run_entry(__stask_registry, ctx, worker, action, data, settings)
        }

        // The runner hands the library the host's services through this symbol (see
        // `stask_plugin_api::abi::HOST_SERVICES_SYMBOL`), outside abi_stable's checked
        // layouts, so libraries built before it keep loading.
        #[doc(hidden)]
        #[no_mangle]
        pub extern "C" fn stask_host_services_v1(enqueue: $crate::abi::EnqueueFn) {
            $crate::__private::set_host_services(enqueue)
        }

        #[doc(hidden)]
        fn __stask_root_module() -> $crate::abi::WorkerLibRef {
            $crate::__private::root_module(__stask_manifest, __stask_run)
        }

        // What `#[abi_stable::export_root_module]` expands to, spelled with `$crate` paths
        // so that authors need no direct abi_stable dependency. The symbol name is
        // abi_stable 0.11's mangled root-module loader name (checked by a unit test).
        #[doc(hidden)]
        #[no_mangle]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            extern "C" fn erased() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(__stask_root_module)
            }
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::abi::WorkerLibRef>(
                    erased,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

/// Builds the root module from the two entry points.
pub fn root_module(
    manifest: crate::abi::ManifestFn,
    run: crate::abi::RunFn,
) -> crate::abi::WorkerLibRef {
    use abi_stable::prefix_type::PrefixTypeTrait;
    crate::abi::WorkerLib { manifest, run }.leak_into_prefix()
}
