//! The worker's answer table (`flush_core::worker`, "What each request
//! answers"): one test per column, every request of the row sent to a
//! region in that state. The table is mito2's; where a test says `Ok` for
//! a region that is not open, mito2 says so too.

mod common;

use common::{rows, Scenario, R1};
use flush_core::error::ErrorKind;
use flush_core::manifest::LeaderState;
use flush_core::request::{RegionOptions, RegionRole, Request};

fn scenario() -> Scenario {
    Scenario::new(1 << 20)
}

fn set_role(region_id: flush_core::ids::RegionId, role: RegionRole) -> Request {
    Request::SetRole { region_id, role }
}

/// Every request but create and open, in table order.
fn ddls_and_write() -> Vec<(&'static str, Request)> {
    let region_id = R1;
    vec![
        ("close", Request::Close { region_id }),
        ("truncate", Request::Truncate { region_id }),
        (
            "alter",
            Request::Alter {
                region_id,
                schema_version: 7,
                add_field: None,
            },
        ),
        ("flush", Request::Flush { region_id }),
        ("downgrade", Request::Downgrade { region_id }),
        ("set_role", set_role(region_id, RegionRole::Leader)),
        (
            "write",
            Request::Write {
                region_id,
                rows: rows("a", 1, 0).into(),
            },
        ),
        ("drop", Request::Drop { region_id }),
    ]
}

fn assert_not_open_answers(scn: &mut Scenario, how: &str) {
    for (kind, request) in ddls_and_write() {
        let ticket = scn.submit(format!("{kind} of a {how} region"), request);
        match kind {
            // mito2: closing a region that is not open succeeds.
            "close" => {
                scn.expect_ok(ticket);
            }
            _ => scn.expect_err(ticket, ErrorKind::RegionNotFound),
        }
    }
}

#[test]
fn a_region_never_created_is_not_found_except_by_close() {
    let mut scn = scenario();
    assert_not_open_answers(&mut scn, "never created");
    let open = scn.submit("open", Request::Open { region_id: R1 });
    scn.expect_err(open, ErrorKind::RegionNotFound);
    scn.finish();
}

#[test]
fn a_closed_region_answers_like_one_never_created_and_opens_as_a_follower() {
    let mut scn = scenario();
    scn.create(R1);
    let close = scn.submit("close", Request::Close { region_id: R1 });
    scn.expect_ok(close);
    assert_not_open_answers(&mut scn, "closed");
    let open = scn.submit("open", Request::Open { region_id: R1 });
    scn.expect_ok(open);
    assert_eq!(scn.view(R1).leader_state, LeaderState::Follower);
    let again = scn.submit("open again", Request::Open { region_id: R1 });
    scn.expect_ok(again);
    scn.finish();
}

#[test]
fn a_dropped_region_answers_like_one_never_created_and_does_not_open() {
    let mut scn = scenario();
    scn.create(R1);
    let drop = scn.submit("drop", Request::Drop { region_id: R1 });
    scn.expect_ok(drop);
    assert_not_open_answers(&mut scn, "dropped");
    let open = scn.submit("open", Request::Open { region_id: R1 });
    scn.expect_err(open, ErrorKind::RegionNotFound);
    // A create makes a new incarnation, a writable leader.
    scn.create(R1);
    assert_eq!(scn.view(R1).leader_state, LeaderState::Writable);
    scn.finish();
}

/// A follower refuses everything that changes its data; close, downgrade,
/// open and set_role answer Ok.
#[test]
fn a_follower_refuses_changes_and_becomes_leader_on_set_role() {
    let mut scn = scenario();
    scn.create(R1);
    let close = scn.submit("close", Request::Close { region_id: R1 });
    scn.expect_ok(close);
    let open = scn.submit("open", Request::Open { region_id: R1 });
    scn.expect_ok(open);
    for (kind, request) in ddls_and_write() {
        if matches!(kind, "close" | "set_role") {
            continue;
        }
        let ticket = scn.submit(format!("{kind} of a follower"), request);
        match kind {
            "downgrade" => {
                scn.expect_ok(ticket);
            }
            _ => scn.expect_err(ticket, ErrorKind::RegionReadOnly),
        }
    }
    assert_eq!(scn.view(R1).leader_state, LeaderState::Follower);
    let lead = scn.submit("lead", set_role(R1, RegionRole::Leader));
    scn.expect_ok(lead);
    let write = scn.write("w1", R1, rows("a", 2, 0));
    scn.expect_written(write);
    let close = scn.submit("close a follower", set_role(R1, RegionRole::Follower));
    scn.expect_ok(close);
    let close = scn.submit("close", Request::Close { region_id: R1 });
    scn.expect_ok(close);
    scn.finish();
}

/// While a downgrade waits for its flush the region flushes but takes no
/// other change; set_role(Leader) makes it writable again and the
/// downgrade's flush, which expected the downgrading state, then fails.
#[test]
fn a_downgrading_region_flushes_refuses_changes_and_can_be_made_leader_again() {
    let mut scn = scenario();
    scn.create(R1);
    let write = scn.write("w1", R1, rows("a", 3, 0));
    scn.expect_written(write);
    let downgrade = scn.submit("downgrade", Request::Downgrade { region_id: R1 });
    scn.expect_waiting(downgrade);
    assert_eq!(scn.view(R1).leader_state, LeaderState::Downgrading);
    for kind in ["truncate", "alter", "write", "drop"] {
        let request = ddls_and_write()
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, request)| request)
            .expect("a request of each kind");
        let ticket = scn.submit(format!("{kind} while downgrading"), request);
        scn.expect_err(ticket, ErrorKind::RegionReadOnly);
    }
    let flush = scn.flush("flush while downgrading", R1);
    scn.expect_waiting(flush);
    let lead = scn.submit("lead", set_role(R1, RegionRole::Leader));
    scn.expect_ok(lead);
    assert_eq!(scn.view(R1).leader_state, LeaderState::Writable);
    scn.run_until_idle();
    scn.expect_err(downgrade, ErrorKind::FlushFailed);
    scn.expect_err(flush, ErrorKind::FlushFailed);
    let write = scn.write("w2", R1, rows("a", 1, 10));
    scn.expect_written(write);
    scn.finish();
}

#[test]
fn retried_requests_are_answered_as_the_first_was() {
    let mut scn = scenario();
    scn.create(R1);
    let create = scn.submit("create again", Request::create(R1));
    scn.expect_ok(create);
    let other = Request::Create {
        region_id: R1,
        options: RegionOptions::SKIP_WAL,
    };
    let create = scn.submit("create with other options", other);
    scn.expect_err(create, ErrorKind::RegionExists);
    for version in [3, 3, 2] {
        let alter = scn.alter(format!("alter to {version}"), R1, version);
        scn.expect_ok(alter);
        assert_eq!(scn.view(R1).schema_version, 3, "never goes back");
    }
    for label in ["truncate", "truncate again"] {
        let truncate = scn.submit(label, Request::Truncate { region_id: R1 });
        scn.expect_ok(truncate);
    }
    for label in ["lead", "lead again"] {
        let lead = scn.submit(label, set_role(R1, RegionRole::Leader));
        scn.expect_ok(lead);
    }
    for label in ["downgrade", "downgrade again"] {
        let downgrade = scn.submit(label, Request::Downgrade { region_id: R1 });
        scn.expect_ok(downgrade);
    }
    let lead = scn.submit("lead after downgrade", set_role(R1, RegionRole::Leader));
    scn.expect_ok(lead);
    let drop = scn.submit("drop", Request::Drop { region_id: R1 });
    scn.expect_ok(drop);
    let drop = scn.submit("drop again", Request::Drop { region_id: R1 });
    scn.expect_err(drop, ErrorKind::RegionNotFound);
    for label in ["close", "close again"] {
        let close = scn.submit(label, Request::Close { region_id: R1 });
        scn.expect_ok(close);
    }
    scn.finish();
}
