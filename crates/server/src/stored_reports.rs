//! Reports as the store keeps them (a kind and a JSON body, so that SQL stays in the store and
//! knows nothing of report shapes) read back as typed bodies for the controller and the crash
//! groups.

use ringfence_protocol::report::{ReportBody, ReportError};
use ringfence_store::ReportRecord;

/// The typed body of a stored report. Every report stored since bodies were typed was checked
/// on the way in, so an error means a row from before that (or a hand-edited database).
pub fn body_of(record: &ReportRecord) -> Result<ReportBody, ReportError> {
    ReportBody::decode(&record.id, &record.kind, record.body.clone())
}
