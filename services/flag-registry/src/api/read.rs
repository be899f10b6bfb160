//! GetFlags (the check's read, cached) and ListFlags (an authority's own, paged).

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cpis_domain::{FieldViolation, FlagState, NhsNumber, VisibilityWindows, is_purged};
use cpis_mesh::{ApiError, Caller};
use cpis_proto::audit::AuditOutcome;
use cpis_proto::common;
use cpis_proto::flags::{GetFlagsRequest, GetFlagsResponse, ListFlagsRequest, ListFlagsResponse};
use time::Date;
use tonic::Request;

use super::{FlagRegistryState, authority_user, caller};
use crate::audit::{AuditActor, GET, LIST};
use crate::convert::{self, wire_flag, wire_state};
use crate::store::{ListQuery, StoreError};

/// The page size when none is asked for, and the largest served.
const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 1000;

pub(crate) async fn get_flags(
    state: &FlagRegistryState,
    request: Request<GetFlagsRequest>,
) -> Result<GetFlagsResponse, ApiError> {
    let peer = caller(&request)?;
    let mut actor = AuditActor::from_caller(&peer);
    // Attendance passes the user's token on, so that the event names the user.
    let mut for_a_check = false;
    if request.metadata().contains_key("authorization") {
        let user = state.tokens.verify_metadata(request.metadata()).await?;
        actor = actor.with_user(&user);
        for_a_check = is_attendance(&peer);
    }
    let request = request.into_inner();
    let subject = NhsNumber::parse(
        request
            .nhs_number
            .as_ref()
            .map(|n| n.value.as_str())
            .unwrap_or_default(),
    )
    .map_err(|e| ApiError::invalid("nhs_number", e.to_string()))?;
    let today = state.clock.today();
    let key = state.nhs_hasher.pseudonym(&subject);
    let stored = state
        .cache
        .get_or_load(&key, || async {
            let flags = state.store.flags_of(&subject).await?;
            Ok::<_, StoreError>(flags.iter().map(|f| wire_flag(f, None)).collect())
        })
        .await?;
    let mut flags: Vec<(FlagState, common::Flag)> = stored
        .into_iter()
        .filter_map(|flag| {
            let state = state_of(&flag, &state.windows, today)?;
            let shown = state.is_shown_in_check()
                || (request.include_history && state == FlagState::History);
            shown.then_some((state, flag))
        })
        .collect();
    // Current first, then recently ended, then history; latest start first within each.
    flags.sort_by(|(a, fa), (b, fb)| {
        rank(*a)
            .cmp(&rank(*b))
            .then_with(|| start_key(fb).cmp(&start_key(fa)))
    });
    let event = actor.event(
        GET,
        AuditOutcome::Success,
        Some(&subject),
        "",
        format!("{} flag(s) shown", flags.len()),
    );
    if for_a_check {
        // The check's own audit event (who, which child, what was shown) is committed by
        // attendance with the attendance, before the clinician sees anything: this event
        // of the registry's read need not hold the answer back for a second commit.
        state.store.record_queued(vec![event]).await?;
    } else {
        state.store.record(vec![event]).await?;
    }
    Ok(GetFlagsResponse {
        flags: flags
            .into_iter()
            .map(|(s, mut flag)| {
                flag.state = wire_state(s) as i32;
                flag
            })
            .collect(),
        evaluation_date: Some(convert::wire_date(today)),
    })
}

/// Whether the peer is the attendance service (whose checks audit their reads themselves).
fn is_attendance(peer: &Caller) -> bool {
    matches!(peer, Caller::Service(workload) if workload.name == crate::ATTENDANCE_WORKLOAD)
}

fn rank(state: FlagState) -> u8 {
    match state {
        FlagState::Current => 0,
        FlagState::RecentlyEnded => 1,
        FlagState::History => 2,
        FlagState::NotYetStarted => 3,
    }
}

fn start_key(flag: &common::Flag) -> (i32, i32, i32) {
    flag.start_date
        .as_ref()
        .map_or((0, 0, 0), |d| (d.year, d.month, d.day))
}

/// The state of a (cached) wire flag on `today`; `None` when purged or unreadable.
fn state_of(flag: &common::Flag, windows: &VisibilityWindows, today: Date) -> Option<FlagState> {
    let date = |d: Option<&common::Date>| d.and_then(|d| convert::date("", d).ok());
    let kind = convert::kind(flag.kind).ok().flatten()?;
    let start = date(flag.start_date.as_ref())?;
    let end = date(flag.end_date.as_ref());
    if is_purged(date(flag.delete_date.as_ref()), today) {
        return None;
    }
    Some(windows.state(start, end, kind, today))
}

pub(crate) async fn list_flags(
    state: &FlagRegistryState,
    request: Request<ListFlagsRequest>,
) -> Result<ListFlagsResponse, ApiError> {
    let authority_code = request.get_ref().authority.clone();
    let (_, authority, actor) =
        authority_user(state, &request, authority_code.as_ref(), LIST).await?;
    let request = request.into_inner();
    let mut violations = Vec::new();
    let page_size = match u32::try_from(request.page_size) {
        Ok(0) => DEFAULT_PAGE_SIZE,
        Ok(n) => n.min(MAX_PAGE_SIZE),
        Err(_) => {
            violations.push(FieldViolation::new("page_size", "must not be negative"));
            DEFAULT_PAGE_SIZE
        }
    };
    let mut kinds = BTreeSet::new();
    for (i, kind) in request.kinds.iter().enumerate() {
        match convert::kind(*kind) {
            Ok(Some(kind)) => {
                kinds.insert(kind);
            }
            _ => violations.push(FieldViolation::new(
                format!("kinds[{i}]"),
                "is not a known kind",
            )),
        }
    }
    let mut states = BTreeSet::new();
    for (i, wanted) in request.states.iter().enumerate() {
        match common::FlagState::try_from(*wanted) {
            Ok(common::FlagState::Unspecified) | Err(_) => violations.push(FieldViolation::new(
                format!("states[{i}]"),
                "is not a known state",
            )),
            Ok(s) => {
                states.insert(s as i32);
            }
        }
    }
    let nhs_number = match request.nhs_number.as_ref().map(|n| n.value.trim()) {
        None | Some("") => None,
        Some(value) => NhsNumber::parse(value)
            .map_err(|e| violations.push(FieldViolation::new("nhs_number", e.to_string())))
            .ok(),
    };
    let after = if request.page_token.is_empty() {
        String::new()
    } else {
        match decode_token(&request.page_token) {
            Some(after) => after,
            None => {
                violations.push(FieldViolation::new("page_token", "is not a page token"));
                String::new()
            }
        }
    };
    if !violations.is_empty() {
        return Err(ApiError::InvalidArgument(violations));
    }

    let today = state.clock.today();
    let wanted = usize::try_from(page_size).unwrap_or(usize::MAX);
    let batch = page_size.saturating_add(1).max(100);
    let mut query = ListQuery {
        authority: authority.clone(),
        after,
        nhs_number,
        case_reference: Some(request.case_reference.trim().to_owned()).filter(|c| !c.is_empty()),
        limit: batch,
    };
    let mut page = Vec::new();
    let mut more = false;
    // Filters on kind and state (a function of the date) apply here, so a batch may yield
    // fewer than a page; read on until the page and one more are found or rows run out.
    loop {
        let rows = state.store.list(&query).await?;
        let exhausted = rows.len() < usize::try_from(batch).unwrap_or(usize::MAX);
        if let Some(last) = rows.last() {
            query.after = last.flag.details().case_reference().as_str().to_owned();
        }
        for row in rows {
            if row.flag.is_purged(today) {
                continue;
            }
            let flag_state = row.flag.state(&state.windows, today);
            let kind_ok = kinds.is_empty() || kinds.contains(&row.flag.kind());
            let state_ok = states.is_empty() || states.contains(&(wire_state(flag_state) as i32));
            if kind_ok && state_ok {
                if page.len() == wanted {
                    more = true;
                    break;
                }
                page.push(wire_flag(&row, Some(flag_state)));
            }
        }
        if more || exhausted {
            break;
        }
    }
    let next_page_token = if more {
        page.last()
            .map(|f| URL_SAFE_NO_PAD.encode(format!("after:{}", f.case_reference)))
            .unwrap_or_default()
    } else {
        String::new()
    };
    let event = actor.event(
        LIST,
        AuditOutcome::Success,
        nhs_number.as_ref(),
        format!("authority:{}", authority.as_str()),
        format!("{} flag(s) listed", page.len()),
    );
    state.store.record(vec![event]).await?;
    Ok(ListFlagsResponse {
        flags: page,
        next_page_token,
    })
}

fn decode_token(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix("after:").map(str::to_owned)
}
