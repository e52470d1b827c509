// What the bench programs share: registration, and a Google Benchmark console reporter that, once
// every benchmark has run, prints each benchmark's median CPU time over its repetitions with the
// spread (max - min, as % of the median), then the ratios the program asked for ("module /
// direct"), each against its target if it has one.
#pragma once

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace micro_bench {

struct Ratio {
  std::string label;      // "proto decode: module / ParseFromString"
  std::string numerator;  // benchmark names, without the repetition suffix
  std::string denominator;
  double target = 0;  // the largest acceptable ratio; 0 = report only
};

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  // Colour only on a terminal (this reporter does not see --benchmark_color).
  explicit RatioReporter(std::vector<Ratio> ratios)
      : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular),
        ratios_(std::move(ratios)) {}

  // Keeps every repetition's time; with --benchmark_*_aggregates_only only the median comes
  // through, which then stands for all of them.
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      const bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
      if (run.run_type != Run::RT_Iteration && !median) continue;
      const double ns =
          run.GetAdjustedCPUTime() * (1e9 / benchmark::GetTimeUnitMultiplier(run.time_unit));
      auto& values = samples_[run.run_name.function_name];
      if (median) {
        if (values.empty()) values.push_back(ns);
      } else {
        values.push_back(ns);
      }
    }
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\n%-52s %12s %9s %5s\n", "benchmark (CPU time)", "median ns", "spread", "reps");
    for (const auto& [name, values] : samples_)
      std::printf("%-52s %12.1f %8.1f%% %5zu\n", name.c_str(), median(values), spread(values),
                  values.size());
    if (ratios_.empty()) return;
    std::printf("\n%-52s %8s %8s  %s\n", "ratio (medians)", "ratio", "target", "verdict");
    for (const Ratio& r : ratios_) {
      auto num = samples_.find(r.numerator);
      auto den = samples_.find(r.denominator);
      if (num == samples_.end() || den == samples_.end()) {
        std::printf("%-52s %8s\n", r.label.c_str(), "n/a (not run, or failed)");
        continue;
      }
      const double ratio = median(num->second) / median(den->second);
      if (r.target > 0) {
        std::printf("%-52s %8.3f %8.2f  %s\n", r.label.c_str(), ratio, r.target,
                    ratio <= r.target ? "MET" : "MISSED");
      } else {
        std::printf("%-52s %8.3f %8s\n", r.label.c_str(), ratio, "-");
      }
    }
    std::fflush(stdout);
  }

 private:
  static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  }
  static double spread(const std::vector<double>& v) {
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    return 100.0 * (*hi - *lo) / median(v);
  }

  std::vector<Ratio> ratios_;
  std::map<std::string, std::vector<double>> samples_;  // per repetition, ns per iteration
};

// Registers a benchmark. With MICRO_BENCH_ITERATIONS=N in the environment it runs exactly N
// iterations once (no calibration runs): what instruction counting under callgrind needs.
inline void add(const char* name, void (*fn)(benchmark::State&)) {
  benchmark::internal::Benchmark* b = benchmark::RegisterBenchmark(name, fn);
  if (const char* n = std::getenv("MICRO_BENCH_ITERATIONS"); n != nullptr && std::atoll(n) > 0)
    b->Iterations(std::atoll(n));
}

// Runs the registered benchmarks with RatioReporter; the body of a bench program's main().
inline int run_with_ratios(int argc, char** argv, std::vector<Ratio> ratios) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter(std::move(ratios));
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}

}  // namespace micro_bench
