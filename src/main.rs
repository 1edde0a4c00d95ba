fn main() {
    std::process::exit(mvault::cli::main());
}
