"""torch_models.py: PyTorch twins of configs/resnet8.cfg and configs/vgg-bn.cfg, written the
way PyTorch code usually is (torchvision's BasicBlock with `out += identity` and an
in-place ReLU module used twice, nn.Sequential, x.view(x.size(0), -1), Dropout), and
models torch2prunus must refuse. Used by test_torch.py."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
            self.shortcut_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            identity = self.shortcut_bn(self.shortcut(x))
        out += identity
        return self.relu(out)


class ResNet8(nn.Module):
    """configs/resnet8.cfg: the same layer names, so the state_dicts line up."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(BasicBlock(16, 16, 1))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2))
        self.layer3 = nn.Sequential(BasicBlock(32, 64, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.pool(x), 1)
        return self.fc(x)


class VggBn(nn.Module):
    """configs/vgg-bn.cfg as an nn.Sequential feature stack and classifier."""

    def __init__(self, num_classes=10, dropout=0.0):
        super().__init__()
        layers, cin = [], 1
        for cout in (16, 32, 64):
            for _ in range(2):
                layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                           nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(64 * 3 * 3, 128), nn.ReLU(inplace=True),
                                        nn.Dropout(dropout), nn.Linear(128, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = x.view(x.size(0), -1)
        return self.classifier(x)


class Branches(nn.Module):
    """A graph with a concat, an average pool, a torch.add, BatchNorm1d and a conv bias."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(1, 4, 5, padding=2, bias=False)
        self.bn_b = nn.BatchNorm2d(4, momentum=0.2, eps=1e-3)
        self.mix = nn.Conv2d(8, 8, 1)
        self.pool = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(8 * 14 * 14, 32)
        self.bn1 = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 32)
        self.out = nn.Linear(32, 10)

    def forward(self, x):
        y = torch.cat([F.relu(self.a(x)), torch.relu(self.bn_b(self.b(x)))], dim=1)
        y = self.pool(F.relu(self.mix(y)))
        h = F.relu(self.bn1(self.fc1(y.reshape(y.size(0), -1))))
        h = torch.add(h, self.fc2(h)).relu()
        return self.out(h)


class Sigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return torch.sigmoid(self.fc(torch.flatten(x, 1)))


class Lstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(28, 16, batch_first=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        out, _ = self.rnn(x[:, 0])
        return self.fc(out[:, -1])


class LstmIndexed(nn.Module):
    """The same, written so that torch.fx traces it: refused at the LSTM's node."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(28, 16, batch_first=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.rnn(torch.flatten(x, 1, 2))[0][:, -1])


class SharedConv(nn.Module):
    """One conv called twice: its weights would belong to two prunus layers."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(F.relu(self.conv(x))), 1))


class InplaceHazard(nn.Module):
    """x.relu_() changes y too, which torch.fx's graph does not show."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x):
        y = self.conv(x)
        z = y.relu_()
        return self.fc(torch.flatten(z + y, 1))


class Mlp(nn.Module):
    """Two Linear layers on a 1-channel image: --input 3,28,28 cannot run it."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))
