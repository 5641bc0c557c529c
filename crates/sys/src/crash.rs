//! The crash handler: a signal handler that asks the out-of-process crash monitor for a
//! minidump of this process.

/// Installs the process's crash handler: on a fatal signal it sends the crash context to the
/// monitor over `client`'s already-connected socket, waits for the dump, and lets the process
/// die. Keep the returned handler alive for as long as crashes should be captured.
pub fn dump_on_crash(
    client: minidumper::Client,
) -> Result<crash_handler::CrashHandler, crash_handler::Error> {
    // SAFETY: `make_crash_event` is unsafe because the closure runs inside a signal handler.
    // Ours only sends the already-captured crash context over an already-connected socket
    // (`request_dump` writes to a socket and waits for the reply, no allocation of shared
    // state, no locks held by the crashed thread) and then lets the process die.
    let event = unsafe {
        crash_handler::make_crash_event(move |context: &crash_handler::CrashContext| {
            crash_handler::CrashEventResult::Handled(client.request_dump(context).is_ok())
        })
    };
    crash_handler::CrashHandler::attach(event)
}
