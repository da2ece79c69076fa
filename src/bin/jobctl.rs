use clap::Parser;
use jobd::cli::JobctlArgs;

fn main() {
    let _ = JobctlArgs::parse();
}
