package kdap.javadebug;

import java.io.IOException;
import java.util.List;
import java.util.Map;

import com.microsoft.java.debug.core.adapter.IVirtualMachineManager;
import com.sun.jdi.Bootstrap;
import com.sun.jdi.VMDisconnectedException;
import com.sun.jdi.VirtualMachine;
import com.sun.jdi.VirtualMachineManager;
import com.sun.jdi.connect.AttachingConnector;
import com.sun.jdi.connect.Connector;
import com.sun.jdi.connect.IllegalConnectorArgumentsException;
import com.sun.jdi.connect.LaunchingConnector;
import com.sun.jdi.connect.ListeningConnector;
import com.sun.jdi.connect.Transport;
import com.sun.jdi.connect.spi.Connection;

// VmManager is JDI's VirtualMachineManager as java-debug sees it: its only
// attaching connector reaches the JVM through the agent, and it remembers
// the VM so that the session can let go of it (release) however it ends.
final class VmManager implements IVirtualMachineManager {
    private final VirtualMachineManager jdi = Bootstrap.virtualMachineManager();
    private final AgentConnector agent;
    private volatile VirtualMachine vm;

    VmManager(AgentConnector agent) {
        this.agent = agent;
    }

    // release disposes of the VM: the JVM cancels every event request and
    // resumes every thread, and the agent takes the JDWP connection back.
    void release() {
        VirtualMachine v = vm;
        vm = null;
        if (v == null) {
            return;
        }
        try {
            v.dispose();
        } catch (VMDisconnectedException e) {
            // gone already: the agent has the connection back
        }
    }

    private final AttachingConnector recording = new AttachingConnector() {
        @Override
        public VirtualMachine attach(Map<String, ? extends Connector.Argument> args) throws IOException, IllegalConnectorArgumentsException {
            VirtualMachine v = agent.attach(args);
            vm = v;
            return v;
        }

        @Override
        public Map<String, Connector.Argument> defaultArguments() {
            return agent.defaultArguments();
        }

        @Override
        public String name() {
            return agent.name();
        }

        @Override
        public String description() {
            return agent.description();
        }

        @Override
        public Transport transport() {
            return agent.transport();
        }
    };

    @Override
    public List<AttachingConnector> attachingConnectors() {
        return List.of(recording);
    }

    @Override
    public boolean connectVirtualMachine(VirtualMachine vm) {
        return true;
    }

    @Override
    public boolean disconnectVirtualMachine(VirtualMachine vm) {
        return true;
    }

    @Override
    public LaunchingConnector defaultConnector() {
        return jdi.defaultConnector();
    }

    @Override
    public List<LaunchingConnector> launchingConnectors() {
        return List.of();
    }

    @Override
    public List<ListeningConnector> listeningConnectors() {
        return List.of();
    }

    @Override
    public List<Connector> allConnectors() {
        return List.of(recording);
    }

    @Override
    public List<VirtualMachine> connectedVirtualMachines() {
        VirtualMachine v = vm;
        return v == null ? List.of() : List.of(v);
    }

    @Override
    public int majorInterfaceVersion() {
        return jdi.majorInterfaceVersion();
    }

    @Override
    public int minorInterfaceVersion() {
        return jdi.minorInterfaceVersion();
    }

    @Override
    public VirtualMachine createVirtualMachine(Connection connection, Process process) throws IOException {
        return jdi.createVirtualMachine(connection, process);
    }

    @Override
    public VirtualMachine createVirtualMachine(Connection connection) throws IOException {
        return jdi.createVirtualMachine(connection);
    }
}
