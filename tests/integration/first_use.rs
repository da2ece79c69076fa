//! What a new user meets the first time: jobctl and `jobd check` telling the truth
//! about what they were given and what jobd does with it.

use std::fs;
use std::time::Duration;

use crate::harness::Dir;

const ZONED: &str = r#"
timezone: Europe/Amsterdam
shutdown_grace: 2s
jobs:
  nightly:
    schedule: "0 30 2 * * *"
    command: ["true"]
  often:
    schedule: "*/5 * * * * *"
    command: ["true"]
"#;

#[test]
fn a_new_time_zone_is_reported_once_not_as_a_change_of_every_cron_job() {
    let dir = Dir::new(ZONED);
    let mut jobd = dir.start(&[]);
    jobd.wait_log("started:", Duration::from_secs(20));
    fs::write(
        dir.jobfile(),
        ZONED.replace("Europe/Amsterdam", "America/New_York"),
    )
    .unwrap();
    let dry = dir.jobctl(&["reload", "--dry-run"]);
    dry.code(0);
    assert_eq!(
        dry.stdout(),
        "jobfile is valid: 0 would be added, 0 removed, 1 changed\n  \
         changed: setting timezone (Europe/Amsterdam -> America/New_York)\n"
    );
    jobd.stop();
}
