// fleecectl entry point (placeholder until the control client lands).
int main() { return 0; }
