// A multi-threaded C++ program for the drop-in tests: compiled with g++
// alone (not linked with obmem) and run with and without
// LD_PRELOAD=libobmem.so; the output must be identical.
// 4 threads use new/delete (plain, array, aligned, nothrow), std::vector,
// std::string, std::map, std::unordered_map and std::shared_ptr; objects are
// passed between threads through a queue, so memory allocated in one thread
// is freed in another. Every result is deterministic.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

struct alignas(64) Aligned {
    std::uint64_t v[8];
};

struct Item {
    std::string name;
    std::vector<int> data;
    std::map<std::string, std::string> attrs;
};

class Queue {
  public:
    void push(std::unique_ptr<Item> it) {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return q_.size() < 256; });
        q_.push_back(std::move(it));
        cv_.notify_all();
    }
    std::unique_ptr<Item> pop() {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return !q_.empty() || producers_ == 0; });
        if (q_.empty()) return nullptr;
        auto it = std::move(q_.front());
        q_.pop_front();
        cv_.notify_all();
        return it;
    }
    void producer_done() {
        std::lock_guard<std::mutex> l(mu_);
        --producers_;
        cv_.notify_all();
    }
    void set_producers(int n) { producers_ = n; }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::unique_ptr<Item>> q_;
    int producers_ = 0;
};

std::uint64_t lcg(std::uint64_t &s) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return s >> 33;
}

// Work private to one thread: containers, strings, the new/delete family.
std::string private_work(int id) {
    std::uint64_t s = 12345 + id;
    std::map<std::string, std::vector<std::string>> m;
    std::unordered_map<int, std::string> um;
    std::uint64_t check = 0;
    for (int i = 0; i < 60000; ++i) {
        std::string k = "k" + std::to_string(lcg(s) % 3000);
        auto &v = m[k];
        v.push_back(std::string(lcg(s) % 200, static_cast<char>('a' + i % 26)));
        if (v.size() > 12) v.erase(v.begin(), v.begin() + 6);
        um[static_cast<int>(lcg(s) % 5000)] += std::to_string(i);
        if (i % 97 == 0) {
            int *arr = new int[lcg(s) % 50000 + 1];
            arr[0] = i;
            check += static_cast<std::uint64_t>(arr[0]);
            delete[] arr;
            auto *a = new Aligned[lcg(s) % 100 + 1];
            check += reinterpret_cast<std::uintptr_t>(a) % alignof(Aligned);  // must be 0
            delete[] a;
            auto *big = new (std::nothrow) char[300000 + lcg(s) % 100000];
            if (big) {
                big[0] = 1;
                delete[] big;
            }
            auto sp = std::make_shared<std::vector<double>>(lcg(s) % 1000, 1.5);
            check += static_cast<std::uint64_t>(std::accumulate(sp->begin(), sp->end(), 0.0));
        }
    }
    std::size_t total = 0;
    for (auto &kv : m)
        for (auto &x : kv.second) total += x.size();
    std::size_t ul = 0;
    for (auto &kv : um) ul += kv.second.size();
    std::ostringstream os;
    os << "thread " << id << ": keys " << m.size() << " bytes " << total << " um " << um.size()
       << "/" << ul << " check " << check;
    return os.str();
}

}  // namespace

int main() {
    // Phase 1: 4 threads of private work.
    std::vector<std::string> out(4);
    {
        std::vector<std::thread> ts;
        for (int i = 0; i < 4; ++i) ts.emplace_back([i, &out] { out[i] = private_work(i); });
        for (auto &t : ts) t.join();
    }
    for (auto &s : out) std::printf("%s\n", s.c_str());

    // Phase 2: 2 producers, 2 consumers; items cross threads.
    Queue q;
    q.set_producers(2);
    std::atomic<std::uint64_t> sum{0}, count{0};
    std::vector<std::thread> ts;
    for (int p = 0; p < 2; ++p)
        ts.emplace_back([p, &q] {
            std::uint64_t s = 777 + p;
            for (int i = 0; i < 40000; ++i) {
                auto it = std::make_unique<Item>();
                it->name = "item-" + std::to_string(p) + "-" + std::to_string(i) +
                           std::string(lcg(s) % 100, 'n');
                it->data.resize(lcg(s) % 300, i);
                for (int a = 0; a < static_cast<int>(lcg(s) % 4); ++a)
                    it->attrs["a" + std::to_string(a)] = std::string(lcg(s) % 64, 'v');
                q.push(std::move(it));
            }
            q.producer_done();
        });
    for (int c = 0; c < 2; ++c)
        ts.emplace_back([&q, &sum, &count] {
            while (auto it = q.pop()) {
                std::uint64_t v = it->name.size();
                for (int x : it->data) v += static_cast<std::uint64_t>(x) % 7;
                for (auto &kv : it->attrs) v += kv.first.size() + kv.second.size();
                it->data.push_back(1);  // realloc in the consumer
                it->name += "!";
                sum += v;
                ++count;
            }
        });
    for (auto &t : ts) t.join();
    std::printf("queue: %llu items, sum %llu\n", static_cast<unsigned long long>(count.load()),
                static_cast<unsigned long long>(sum.load()));
    return 0;
}
