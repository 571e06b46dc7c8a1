//! A guest as a plugin: functions the host calls by name, bytes in and
//! bytes out. Each call runs as a green thread of its own, so calls overlap
//! whenever one waits.
//!
//! ```no_run
//! fn upper(input: &[u8]) -> Vec<u8> {
//!     input.to_ascii_uppercase()
//! }
//!
//! fn words(input: &[u8]) -> Result<String, std::str::Utf8Error> {
//!     Ok(std::str::from_utf8(input)?.split_whitespace().count().to_string())
//! }
//!
//! wasmlet::export!(upper, words);
//!
//! fn main() {} // runs once, before the first call: set-up goes here
//! ```
//!
//! The host adds the guest with `Hub::add_plugin` and calls
//! `hub.call(plugin, "upper", b"abc")`.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Mutex;

use crate::abi::wasmlet::runtime::hub::{self, CallStatus};
use crate::error::GreenThreadError;
use crate::task::Body;

/// A function the host may call: its input, and its output or error
/// message.
pub type PluginFn = fn(&[u8]) -> Result<Vec<u8>, String>;

/// The guest's exported functions, by name. A static, not a thread-local:
/// every green thread has thread-locals of its own.
static FUNCTIONS: Mutex<BTreeMap<&'static str, PluginFn>> = Mutex::new(BTreeMap::new());

/// What an exported function may return: bytes or text, or a `Result` of
/// them whose error becomes the call's error message.
pub trait PluginOutput {
    /// The call's output, or its error message.
    fn into_output(self) -> Result<Vec<u8>, String>;
}

impl PluginOutput for Vec<u8> {
    fn into_output(self) -> Result<Vec<u8>, String> {
        Ok(self)
    }
}

impl PluginOutput for String {
    fn into_output(self) -> Result<Vec<u8>, String> {
        Ok(self.into_bytes())
    }
}

impl PluginOutput for &str {
    fn into_output(self) -> Result<Vec<u8>, String> {
        Ok(self.as_bytes().to_vec())
    }
}

impl PluginOutput for &[u8] {
    fn into_output(self) -> Result<Vec<u8>, String> {
        Ok(self.to_vec())
    }
}

impl<T: PluginOutput, E: Display> PluginOutput for Result<T, E> {
    fn into_output(self) -> Result<Vec<u8>, String> {
        self.map_err(|e| e.to_string())?.into_output()
    }
}

/// A serde value as a call's JSON input or output (feature `json`).
///
/// ```ignore
/// use wasmlet::plugin::Json;
///
/// #[derive(serde::Deserialize)]
/// struct Order { items: Vec<u32> }
/// #[derive(serde::Serialize)]
/// struct Total { count: usize, sum: u32 }
///
/// fn total(input: &[u8]) -> Result<Json<Total>, String> {
///     let Json(order): Json<Order> = Json::parse(input)?;
///     Ok(Json(Total { count: order.items.len(), sum: order.items.iter().sum() }))
/// }
/// wasmlet::export!(total);
/// ```
#[cfg(feature = "json")]
#[derive(Clone, Debug, PartialEq)]
pub struct Json<T>(pub T);

#[cfg(feature = "json")]
impl<T: serde::de::DeserializeOwned> Json<T> {
    /// The call's input, read as JSON.
    ///
    /// # Errors
    /// What serde says is wrong with it, as the call's error message.
    pub fn parse(input: &[u8]) -> Result<Json<T>, String> {
        serde_json::from_slice(input)
            .map(Json)
            .map_err(|e| format!("the input is not the JSON expected: {e}"))
    }
}

#[cfg(feature = "json")]
impl<T: serde::Serialize> PluginOutput for Json<T> {
    fn into_output(self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(&self.0).map_err(|e| e.to_string())
    }
}

/// Exports functions for the host to call by name: each is a
/// `fn(&[u8]) -> impl PluginOutput` (bytes or text, or a `Result` of them).
/// Registered before `main` runs.
///
/// ```no_run
/// fn echo(input: &[u8]) -> Vec<u8> {
///     input.to_vec()
/// }
/// wasmlet::export!(echo);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export {
    ($($function:ident),+ $(,)?) => {
        const _: () = {
            extern "C" fn register() {
                $(
                    $crate::plugin::register(stringify!($function), |input: &[u8]| {
                        $crate::plugin::PluginOutput::into_output($function(input))
                    });
                )+
            }
            #[used]
            #[link_section = ".init_array"]
            static REGISTER: extern "C" fn() = register;
        };
    };
}

/// Adds `function` under `name` (what [`export!`] expands to).
#[doc(hidden)]
pub fn register(name: &'static str, function: PluginFn) {
    FUNCTIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name, function);
}

/// A host call's green thread: the function's name and input, filled in by
/// the hub's `call-begin`.
pub(crate) struct CallBody {
    pub name: Vec<u8>,
    pub input: Vec<u8>,
}

impl CallBody {
    /// Buffers of the sizes the hub says.
    pub(crate) fn new() -> CallBody {
        CallBody {
            name: vec![0; hub::call_name_len() as usize],
            input: vec![0; hub::call_input_len() as usize],
        }
    }
}

fn give_back(status: CallStatus, bytes: &[u8]) {
    hub::call_return(status, bytes.as_ptr() as u32, bytes.len() as u32);
}

impl Body for CallBody {
    fn run(&mut self) -> bool {
        let name = String::from_utf8_lossy(&self.name).into_owned();
        let function = FUNCTIONS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name.as_str())
            .copied();
        match function {
            None => give_back(CallStatus::NoSuchFunction, b""),
            Some(function) => {
                let outcome = function(&self.input);
                if crate::task::killed() {
                    // Cancelled by its caller: the hub reports that.
                    return false;
                }
                match outcome {
                    Ok(output) => give_back(CallStatus::Ok, &output),
                    Err(message) => give_back(CallStatus::Failed, message.as_bytes()),
                }
            }
        }
        true
    }

    fn fail(&mut self, error: GreenThreadError) {
        // A trap or a kill the hub knows of itself, and says so.
        if let GreenThreadError::Panicked(message) = error {
            give_back(CallStatus::Panicked, message.as_bytes());
        }
    }
}
