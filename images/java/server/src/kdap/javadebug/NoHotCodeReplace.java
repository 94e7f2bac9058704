package kdap.javadebug;

import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.function.Consumer;

import com.microsoft.java.debug.core.adapter.HotCodeReplaceEvent;
import com.microsoft.java.debug.core.adapter.IHotCodeReplaceProvider;

import io.reactivex.Observable;

// NoHotCodeReplace: kdap debugs the code that runs; it does not replace it.
final class NoHotCodeReplace implements IHotCodeReplaceProvider {
    @Override
    public void onClassRedefined(Consumer<List<String>> consumer) {
    }

    @Override
    public CompletableFuture<List<String>> redefineClasses() {
        return CompletableFuture.completedFuture(List.of());
    }

    @Override
    public Observable<HotCodeReplaceEvent> getEventHub() {
        return Observable.empty();
    }
}
