fn main() -> std::process::ExitCode {
    dts_ledger::cli::main()
}
