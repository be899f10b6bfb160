//! ListAttendances: an authority's users list the attendances of children it holds a flag
//! for, newest first, paged.

use cpis_domain::{NhsNumber, OdsCode};
use cpis_mesh::token::Activity;
use cpis_mesh::{ApiError, Caller, FieldViolation};
use cpis_proto::attendance::{Attendance, ListAttendancesRequest, ListAttendancesResponse};
use cpis_proto::common;
use prost::Message;
use tonic::Request;
use uuid::Uuid;

use crate::api::AttendanceApi;
use crate::convert::{micros, now_us, principal, timestamp};
use crate::events;
use crate::store::{AttendanceQuery, AttendanceStore, StoreError, StoredAttendance};

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

/// The page token after `row`: its arrival and id (opaque to callers).
fn token(row: &StoredAttendance) -> String {
    format!("{}_{}", row.summary.arrival_us, row.attendance_id.simple())
}

fn position(token: &str) -> Option<(i64, Uuid)> {
    let (at, id) = token.split_once('_')?;
    Some((at.parse().ok()?, Uuid::try_parse(id).ok()?))
}

fn attendance(row: StoredAttendance) -> Result<Attendance, ApiError> {
    let practitioner = common::Principal::decode(row.practitioner.as_slice()).map_err(|_| {
        ApiError::Internal(format!(
            "stored attendance {} does not decode",
            row.attendance_id
        ))
    })?;
    Ok(Attendance {
        attendance_id: row.attendance_id.to_string(),
        nhs_number: Some(common::NhsNumber {
            value: row.nhs_number,
        }),
        care_setting: Some(common::CareSetting {
            organisation: Some(common::OdsCode {
                value: row.summary.organisation,
            }),
            site: row.summary.site.unwrap_or_default(),
            setting_type: row.summary.setting_type,
            name: row.summary.setting_name,
            phone: String::new(),
        }),
        arrival_time: Some(timestamp(row.summary.arrival_us)),
        practitioner: Some(practitioner),
        flag_current: row.flag_current,
        record_time: Some(timestamp(row.record_us)),
    })
}

impl<S: AttendanceStore> AttendanceApi<S> {
    pub(crate) async fn list(
        &self,
        request: Request<ListAttendancesRequest>,
    ) -> Result<ListAttendancesResponse, ApiError> {
        let user = self.tokens.verify_metadata(request.metadata()).await?;
        let authority: OdsCode = request
            .get_ref()
            .authority
            .as_ref()
            .map(|a| a.value.as_str())
            .unwrap_or_default()
            .parse()
            .map_err(|e: cpis_domain::OdsCodeError| {
                ApiError::invalid("authority", e.to_string())
            })?;
        // Only the authority's own users; clinicians see attendances in the check's answer.
        user.require(Activity::NotificationRead)?;
        user.require_organisation(&authority)?;
        let caller = request.extensions().get::<Caller>().cloned();
        let body = request.into_inner();

        let mut problems = Vec::new();
        let nhs_number = match body.nhs_number.as_ref().map(|n| n.value.as_str()) {
            None | Some("") => None,
            Some(value) => NhsNumber::parse(value)
                .map_err(|e| problems.push(FieldViolation::new("nhs_number", e.to_string())))
                .ok(),
        };
        let limit = match i64::from(body.page_size) {
            0 => DEFAULT_PAGE,
            n if n < 0 => {
                problems.push(FieldViolation::new("page_size", "must not be negative"));
                DEFAULT_PAGE
            }
            n => n.min(MAX_PAGE),
        };
        let after = if body.page_token.is_empty() {
            None
        } else {
            let at = position(&body.page_token);
            if at.is_none() {
                problems.push(FieldViolation::new(
                    "page_token",
                    "is not a token this service gave",
                ));
            }
            at
        };
        let start_us = body.start_time.as_ref().map(micros);
        let end_us = body.end_time.as_ref().map(micros);
        if let (Some(start), Some(end)) = (start_us, end_us)
            && end < start
        {
            problems.push(FieldViolation::new("end_time", "is before start_time"));
        }
        if !problems.is_empty() {
            return Err(ApiError::InvalidArgument(problems));
        }

        let user_wire = principal(&user);
        let event = events::list(
            caller.as_ref(),
            &user_wire,
            authority.as_str(),
            nhs_number.as_ref().map(NhsNumber::as_str),
            now_us(),
            "attendances listed".to_owned(),
        )
        .map_err(StoreError::from)?;
        // A read that cannot be audited is not served.
        self.store.record(None, &[event]).await?;
        self.notify_outbox();

        let mut rows = self
            .store
            .list(&AttendanceQuery {
                authority: authority.as_str().to_owned(),
                nhs_number: nhs_number.map(|n| n.as_str().to_owned()),
                start_us,
                end_us,
                after,
                limit: limit + 1,
            })
            .await?;
        let next_page_token = if rows.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            rows.last().map(token).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(ListAttendancesResponse {
            attendances: rows.into_iter().map(attendance).collect::<Result<_, _>>()?,
            next_page_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let id = Uuid::now_v7();
        assert_eq!(position(&format!("123_{}", id.simple())), Some((123, id)));
        assert_eq!(position("nonsense"), None);
        assert_eq!(position("12_nope"), None);
    }
}
