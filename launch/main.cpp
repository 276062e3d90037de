// strata command line (placeholder while the pieces land).
int main() { return 0; }
