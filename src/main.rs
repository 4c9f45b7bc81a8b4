fn main() -> std::process::ExitCode {
    textdesk::cli::main()
}
